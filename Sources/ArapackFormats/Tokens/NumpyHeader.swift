/// The header of a NumPy `.npy` file holding token ids (docs/formats.md, "Token shards"): magic, version 1, 2 or 3, the
/// header length, and a Python dict literal with exactly `descr`, `fortran_order` and `shape`. Read strictly: one of
/// the integer dtypes `u2 u4 i4 i8` in either byte order, C order, one or two dimensions, and a data size equal to the
/// shape's elements times the item size (no trailing bytes).
struct NumpyHeader {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
    /// Header texts longer than this are refused before they are read (numpy's own limit is 10,000 for untrusted files).
    static let maximumHeaderLength = 65_536

    let dtype: TokenDType
    let bigEndian: Bool
    let shape: [Int]
    let dataOffset: Int

    init(parsing bytes: UnsafeRawBufferPointer, file: String) throws {
        func bad(_ field: String, _ detail: String) -> TokenShardError { .header(file: file, field: field, detail: detail) }
        guard bytes.count >= 10 else { throw bad("magic", "the file ends inside the header") }
        let major = bytes[6], minor = bytes[7]
        guard (1...3).contains(major), minor == 0 else { throw bad("version", "\(major).\(minor); .npy versions are 1.0, 2.0 and 3.0") }
        let lengthSize = major == 1 ? 2 : 4
        guard bytes.count >= 8 + lengthSize else { throw bad("header length", "the file ends inside the header") }
        let length = major == 1 ? Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt16.self)))
                                : Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let start = 8 + lengthSize
        guard length <= Self.maximumHeaderLength else { throw bad("header length", "\(length) bytes; at most \(Self.maximumHeaderLength)") }
        guard start + length <= bytes.count else { throw bad("header length", "\(length) bytes past the end of the file (\(bytes.count) bytes)") }
        let text = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + length)]))
        guard major == 3 || text.allSatisfy({ $0 < 0x80 }) else { throw bad("header", "not ASCII (versions 1 and 2 are latin-1 Python literals)") }
        var parser = Parser(text: text, file: file)
        let dict = try parser.dictionary()
        guard Set(dict.keys) == ["descr", "fortran_order", "shape"] else {
            throw bad("keys", "\(dict.keys.sorted()); a .npy header has exactly descr, fortran_order and shape")
        }
        guard case let .string(descr)? = dict["descr"] else { throw bad("descr", "not a string") }
        let types: [String: TokenDType] = ["u2": .u16, "u4": .u32, "i4": .i32, "i8": .i64]
        guard descr.count == 3, let order = descr.first, order == "<" || order == ">", let t = types[String(descr.dropFirst())] else {
            throw bad("descr", "'\(String(descr.prefix(40)).escapingControlCharacters)'; token ids are <u2, <u4, <i4 or <i8 (or big-endian >…)")
        }
        guard case let .bool(fortran)? = dict["fortran_order"] else { throw bad("fortran_order", "not True or False") }
        guard !fortran else { throw bad("fortran_order", "True; only C-ordered token arrays are read") }
        guard case let .tuple(shape)? = dict["shape"], (1...2).contains(shape.count) else {
            throw bad("shape", "token ids are a 1-D stream or a 2-D [sequences, length] array")
        }
        var elements = 1
        for d in shape {
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("shape", "\(shape.map(String.init).joined(separator: " × ")) elements overflow") }
            elements = p
        }
        let (size, o) = elements.multipliedReportingOverflow(by: t.itemSize)
        let dataOffset = start + length
        guard !o, size == bytes.count - dataOffset else {
            let tuple = "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
            throw TokenShardError.layout(file: file, detail: "shape \(tuple) of \(descr) takes \(o ? "more than Int.max" : String(size)) bytes, but \(bytes.count - dataOffset) follow the header")
        }
        (dtype, bigEndian, self.shape, self.dataOffset) = (t, order == ">", shape, dataOffset)
    }

    /// A value of the header's dict literal.
    enum Value { case string(String), bool(Bool), int(Int), tuple([Int]) }

    /// The subset of Python's literal syntax np.save writes: `{'key': value, …}` with string, True/False and tuple of
    /// non-negative integers values, then spaces and one newline.
    struct Parser {
        let text: [UInt8]
        let file: String
        var i = 0

        func fail(_ detail: String) -> TokenShardError { .header(file: file, field: "header", detail: "byte \(i): \(detail)") }

        mutating func skipSpaces() { while i < text.count, text[i] == 0x20 { i += 1 } }

        mutating func expect(_ c: UInt8) throws {
            skipSpaces()
            guard i < text.count, text[i] == c else { throw fail("expected '\(Character(Unicode.Scalar(c)))'") }
            i += 1
        }

        mutating func dictionary() throws -> [String: Value] {
            try expect(UInt8(ascii: "{"))
            var out: [String: Value] = [:]
            while true {
                skipSpaces()
                if i < text.count, text[i] == UInt8(ascii: "}") { i += 1; break }
                let key = try string()
                try expect(UInt8(ascii: ":"))
                guard out[key] == nil else { throw fail("key '\(String(key.prefix(40)).escapingControlCharacters)' twice") }
                out[key] = try value()
                skipSpaces()
                guard i < text.count else { throw fail("the dict does not end") }
                if text[i] == UInt8(ascii: ",") { i += 1 } else if text[i] != UInt8(ascii: "}") { throw fail("expected ',' or '}'") }
            }
            skipSpaces()
            guard i == text.count - 1, text[i] == 0x0A else { throw fail("the header must end with spaces and one newline") }
            return out
        }

        mutating func string() throws -> String {
            skipSpaces()
            guard i < text.count, text[i] == UInt8(ascii: "'") else { throw fail("expected a quoted string") }
            i += 1
            let start = i
            while i < text.count, text[i] != UInt8(ascii: "'") {
                guard text[i] != UInt8(ascii: "\\"), text[i] >= 0x20 else { throw fail("escapes and control characters are not read") }
                i += 1
            }
            guard i < text.count else { throw fail("the string does not end") }
            defer { i += 1 }
            return String(decoding: text[start..<i], as: UTF8.self)
        }

        /// A non-negative decimal integer (overflow refused).
        mutating func integer() throws -> Int {
            var n = 0, digits = 0
            while i < text.count, (0x30...0x39).contains(text[i]) {
                let (m, o1) = n.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(text[i] - 0x30))
                guard !o1, !o2 else { throw fail("an integer overflows") }
                n = a
                digits += 1
                i += 1
            }
            guard digits > 0 else { throw fail("expected a non-negative integer") }
            return n
        }

        mutating func value() throws -> Value {
            skipSpaces()
            guard i < text.count else { throw fail("a value is missing") }
            switch text[i] {
            case UInt8(ascii: "'"): return .string(try string())
            case UInt8(ascii: "T"), UInt8(ascii: "F"):
                for (word, v) in [("True", true), ("False", false)] where text[i...].starts(with: Array(word.utf8)) {
                    i += word.utf8.count
                    return .bool(v)
                }
                throw fail("expected True or False")
            case 0x30...0x39: return .int(try integer())
            case UInt8(ascii: "("):
                i += 1
                var dims: [Int] = []
                while true {
                    skipSpaces()
                    if i < text.count, text[i] == UInt8(ascii: ")") { i += 1; return .tuple(dims) }
                    guard dims.count < 8 else { throw fail("more than 8 dimensions") }
                    dims.append(try integer())
                    skipSpaces()
                    guard i < text.count else { throw fail("the shape does not end") }
                    if text[i] == UInt8(ascii: ",") { i += 1 } else if text[i] != UInt8(ascii: ")") { throw fail("expected ',' or ')'") }
                }
            default: throw fail("expected a string, True, False or a tuple")
            }
        }
    }
}
