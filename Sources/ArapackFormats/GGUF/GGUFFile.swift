import ArapackTensor
import Dispatch
import CKernels

/// A GGUF v3 file opened read-only through a memory map and validated on open (docs/formats.md, "GGUF"): every count,
/// length and dimension bounded and overflow-checked before anything is sized by it, offsets aligned, inside the
/// file and non-overlapping, names unique, tensor types F32, F16, BF16 and the block types of `GGUF.TensorType` only,
/// rows whole blocks. F32/F16/BF16 tensors are views of the mapping; a block tensor is served dequantized to float32
/// as ggml's dequantize_row_* computes it.
public final class GGUFFile: TensorSource {
    /// Bounds from what a GGUF of any real model holds: a 70B model has ~720 tensors and ~30 metadata keys.
    public static let maximumTensors = 1 << 16
    public static let maximumKeys = 1 << 16
    /// Tensor names (ggml keeps 63 bytes) and keys.
    public static let maximumNameBytes = 256
    public static let maximumDimensions = 4

    /// A metadata value as read: scalars widened, arrays of one scalar type or of strings.
    public enum Value: Equatable, Sendable {
        case int(Int64), uint(UInt64), float(Double), bool(Bool), string(String)
        case ints([Int64]), floats([Double]), bools([Bool]), strings([String])

        public var intValue: Int? {
            switch self {
            case let .int(v): return Int(exactly: v)
            case let .uint(v): return Int(exactly: v)
            default: return nil
            }
        }
        public var stringValue: String? { if case let .string(s) = self { return s } else { return nil } }
        public var floatValue: Double? {
            switch self {
            case let .float(v): return v
            case let .int(v): return Double(v)
            case let .uint(v): return Double(v)
            default: return nil
            }
        }
        /// A short display form (arrays by their length).
        public var summary: String {
            switch self {
            case let .int(v): return "\(v)"
            case let .uint(v): return "\(v)"
            case let .float(v): return "\(v)"
            case let .bool(v): return "\(v)"
            case let .string(s): return s.count > 120 ? String(s.prefix(120)) + "…" : s
            case let .ints(a): return "[\(a.count) integers]"
            case let .floats(a): return "[\(a.count) numbers]"
            case let .bools(a): return "[\(a.count) booleans]"
            case let .strings(a): return "[\(a.count) strings]"
            }
        }
    }

    /// One tensor's entry.
    public struct Entry: Sendable {
        public var name: String
        /// PyTorch order, outermost first (the file lists them innermost first).
        public var shape: [Int]
        public var type: GGUF.TensorType
        /// Byte range inside the file.
        public var range: Range<Int>
    }

    public let file: MappedFile
    /// Metadata in file order.
    public let metadata: [(key: String, value: Value)]
    public let entries: [Entry]
    public let alignment: Int
    private let index: [String: Int]

    public var formatName: String { "gguf" }
    public var path: String { file.path }

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    /// Validates a mapped (or copied) file.
    public init(file mapped: MappedFile) throws {
        file = mapped
        let parsed = try mapped.withUnsafeBytes { bytes in
            var parser = Parser(bytes: bytes, file: mapped.path)
            return try parser.parse()
        }
        (metadata, entries, alignment) = parsed
        index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.name, $0) })
    }

    /// The value of metadata `key`.
    public subscript(key: String) -> Value? { metadata.last { $0.key == key }?.value }

    public var filePaths: [String] { [path] }
    public func filePath(of name: String) -> String? { index[name] == nil ? nil : path }
    public var tensorNames: [String] { entries.map(\.name) }

    public func entry(named name: String) throws -> Entry {
        guard let i = index[name] else { throw GGUFError.format(file: path, offset: 0, detail: "no tensor \(name)") }
        return entries[i]
    }

    public func descriptor(named name: String) throws -> TensorDescriptor {
        let e = try entry(named: name)
        return TensorDescriptor(dtype: e.type.dtype ?? .f32, shape: e.shape)
    }

    public func tensor(named name: String) throws -> Tensor {
        let e = try entry(named: name)
        if let dtype = e.type.dtype { return try Tensor(dtype: dtype, shape: e.shape, storage: TensorStorage(file: file, range: e.range)) }
        // A block type: dequantized as ggml does (bounded: at most 4 bytes per 0.5625 of the file's, Q4_0's ratio).
        return try blockDecoder(e).decodeAll(shape: e.shape)
    }

    /// A block-type matrix (Q8_0, the K-quants, …) decoded a run of rows at a time, as `tensor(named:)` decodes it
    /// whole; nil for a float tensor or one that is not a matrix.
    public func rowDecoder(named name: String) throws -> RowDecoder? {
        let e = try entry(named: name)
        guard e.type.dtype == nil, e.shape.count == 2 else { return nil }
        return blockDecoder(e)
    }

    /// A block tensor's rows (its last dimension; each a whole number of blocks, as the header check requires)
    /// decoded by `arapack_gguf_decode`, block by block as ggml's `dequantize_row_*`.
    private func blockDecoder(_ e: Entry) -> RowDecoder {
        let cols = e.shape.last ?? 1, count = e.shape.reduce(1, *)
        let (type, perRow, bytesPerBlock) = (Int32(e.type.rawValue), cols / e.type.blockElements, e.type.blockBytes)
        let start = e.range.lowerBound, file = file
        return RowDecoder(rows: cols == 0 ? 0 : count / cols, cols: cols, storage: TensorStorage(file: file, range: e.range)) { first, rows, out in
            file.withUnsafeBytes { raw in
                let blocks = raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + start + first * perRow * bytesPerBlock
                _ = arapack_gguf_decode(type, blocks, rows * perRow, out)
            }
        }
    }

    /// The strict reader of the header (magic, version, counts, key/values, tensor infos).
    struct Parser {
        let bytes: UnsafeRawBufferPointer
        let file: String
        var at = 0

        init(bytes: UnsafeRawBufferPointer, file: String) {
            self.bytes = bytes
            self.file = file
        }

        func fail(_ detail: String, at offset: Int? = nil) -> GGUFError { .format(file: file, offset: offset ?? at, detail: detail) }

        mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
            guard n >= 0, n <= bytes.count - at else { throw fail("needs \(n) bytes, \(bytes.count - at) remain") }
            defer { at += n }
            return UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])
        }
        mutating func u8() throws -> UInt8 { try take(1)[0] }
        mutating func u16() throws -> UInt16 { UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self)) }
        mutating func u32() throws -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
        mutating func u64() throws -> UInt64 { UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self)) }

        /// A count or length, at most `limit` and at most what the remaining bytes can hold at `unit` bytes each.
        mutating func count(_ what: String, limit: Int = .max, unit: Int = 1) throws -> Int {
            let start = at
            let n = try u64()
            guard n <= UInt64(limit), n <= UInt64((bytes.count - at) / max(unit, 1)) else {
                throw fail("\(what) \(n) exceeds \(limit == .max ? "what the file can hold" : "the limit of \(limit) or what the file can hold")", at: start)
            }
            return Int(n)
        }

        mutating func string(_ what: String, limit: Int = .max) throws -> String {
            let start = at
            let n = try count("\(what) length", limit: limit)
            guard let s = String(validating: try take(n), as: UTF8.self) else { throw fail("\(what) is not UTF-8", at: start) }
            return s
        }

        mutating func scalar(_ type: UInt32) throws -> Value {
            switch type {
            case 0: return .uint(UInt64(try u8()))
            case 1: return .int(Int64(Int8(bitPattern: try u8())))
            case 2: return .uint(UInt64(try u16()))
            case 3: return .int(Int64(Int16(bitPattern: try u16())))
            case 4: return .uint(UInt64(try u32()))
            case 5: return .int(Int64(Int32(bitPattern: try u32())))
            case 6: return .float(Double(Float(bitPattern: try u32())))
            case 7:
                let b = try u8()
                guard b <= 1 else { throw fail("a bool of \(b)", at: at - 1) }
                return .bool(b == 1)
            case 8: return .string(try string("a string"))
            case 10: return .uint(try u64())
            case 11: return .int(Int64(bitPattern: try u64()))
            case 12: return .float(Double(bitPattern: try u64()))
            default: throw fail("value type \(type) is not a GGUF scalar type", at: at - 4)
            }
        }

        static let scalarBytes: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 10: 8, 11: 8, 12: 8]

        mutating func value() throws -> Value {
            let type = try u32()
            guard type == 9 else { return try scalar(type) }
            let elementType = try u32()
            guard let unit = Self.scalarBytes[elementType] else {
                throw fail(elementType == 9 ? "arrays of arrays are not read" : "array element type \(elementType) is not a GGUF scalar type", at: at - 4)
            }
            let n = try count("array length", unit: unit)
            var ints: [Int64] = [], floats: [Double] = [], bools: [Bool] = [], strings: [String] = []
            for _ in 0..<n {
                switch try scalar(elementType) {
                case let .int(v): ints.append(v)
                case let .uint(v): ints.append(Int64(truncatingIfNeeded: v))
                case let .float(v): floats.append(v)
                case let .bool(v): bools.append(v)
                case let .string(s): strings.append(s)
                default: break
                }
            }
            switch elementType {
            case 6, 12: return .floats(floats)
            case 7: return .bools(bools)
            case 8: return .strings(strings)
            default: return .ints(ints)
            }
        }

        mutating func parse() throws -> ([(key: String, value: Value)], [Entry], Int) {
            guard bytes.count >= 24, Array(bytes[0..<4]) == GGUF.magic else { throw fail("not a GGUF file (no GGUF magic)", at: 0) }
            at = 4
            let version = try u32()
            guard version == GGUF.version else { throw fail("GGUF version \(version); arapack reads version 3", at: 4) }
            let tensorCount = try count("tensor count", limit: GGUFFile.maximumTensors)
            let keyCount = try count("metadata count", limit: GGUFFile.maximumKeys)
            var metadata: [(key: String, value: Value)] = []
            var keys = Set<String>()
            for _ in 0..<keyCount {
                let start = at
                let key = try string("a key", limit: GGUFFile.maximumNameBytes)
                guard keys.insert(key).inserted else { throw fail("key \(key) appears twice", at: start) }
                metadata.append((key, try value()))
            }
            var alignment = GGUF.defaultAlignment
            if let a = metadata.first(where: { $0.key == "general.alignment" })?.value {
                guard case let .uint(v) = a, v > 0, v <= 1 << 16, v & (v - 1) == 0 else { throw fail("general.alignment \(a.summary) is not a power of two in 1...65536 (a uint32)") }
                alignment = Int(v)
            }
            var infos: [(name: String, shape: [Int], type: GGUF.TensorType, offset: Int, at: Int)] = []
            var names = Set<String>()
            for _ in 0..<tensorCount {
                let start = at
                let name = try string("a tensor name", limit: GGUFFile.maximumNameBytes)
                guard names.insert(name).inserted else { throw fail("tensor \(name) appears twice", at: start) }
                let dims = try u32()
                guard (1...UInt32(GGUFFile.maximumDimensions)).contains(dims) else { throw fail("tensor \(name): \(dims) dimensions; 1 to \(GGUFFile.maximumDimensions)") }
                var ne: [Int] = []
                var elements = 1
                for _ in 0..<dims {
                    let d = try u64()
                    guard d >= 1, d <= UInt64(Int32.max) else { throw fail("tensor \(name): dimension \(d) out of 1...\(Int32.max)", at: at - 8) }
                    let (p, overflow) = elements.multipliedReportingOverflow(by: Int(d))
                    guard !overflow, p <= bytes.count else { throw fail("tensor \(name): \(ne + [Int(d)]) holds more values than the file can", at: at - 8) }
                    elements = p
                    ne.append(Int(d))
                }
                let code = try u32()
                guard let type = GGUF.TensorType(rawValue: code) else {
                    throw fail("tensor \(name): type \(code); arapack reads " + GGUF.TensorType.allCases.map(\.name).joined(separator: ", "), at: at - 4)
                }
                guard ne[0] % type.blockElements == 0 else { throw fail("tensor \(name): rows of \(ne[0]) are not whole \(type.name) blocks") }
                let offset = try u64()
                guard offset <= UInt64(bytes.count), Int(offset) % alignment == 0 else {
                    throw fail("tensor \(name): offset \(offset) is not a multiple of \(alignment) inside the file", at: at - 8)
                }
                infos.append((name, ne.reversed(), type, Int(offset), start))
            }
            let dataStart = (at + alignment - 1) / alignment * alignment
            guard dataStart <= bytes.count else { throw fail("the data section starts past the end of the file") }
            var entries: [Entry] = []
            var end = 0
            for info in infos.sorted(by: { $0.offset < $1.offset }) {
                let size = info.type.byteCount(elements: info.shape.reduce(1, *))!
                guard info.offset >= end else { throw fail("tensor \(info.name) overlaps the tensor before it", at: info.at) }
                guard size <= bytes.count - dataStart - info.offset else {
                    throw fail("tensor \(info.name): \(size) bytes at data offset \(info.offset) run past the end of the file", at: info.at)
                }
                end = info.offset + size
                entries.append(Entry(name: info.name, shape: info.shape, type: info.type, range: (dataStart + info.offset)..<(dataStart + end)))
            }
            let order = Dictionary(uniqueKeysWithValues: infos.enumerated().map { ($1.name, $0) })
            entries.sort { order[$0.name]! < order[$1.name]! }
            return (metadata, entries, alignment)
        }
    }
}

/// A GGUF file that cannot be read (exit 2): the file, the byte offset, what was wrong.
public enum GGUFError: Error, Equatable, CustomStringConvertible, Sendable {
    case format(file: String, offset: Int, detail: String)

    public var description: String {
        switch self {
        case let .format(file, offset, detail): return "\(file): GGUF at byte \(offset): \(detail)"
        }
    }
}
