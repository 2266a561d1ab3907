import ArapackTensor

/// A validated safetensors header: tensor entries in data order, and the `__metadata__` map.
///
/// `parse` applies every rule of the reference reader before any tensor byte is touched, plus the
/// rules it omits (duplicate keys, unknown entry fields).
public struct SafetensorsHeader: Equatable, Sendable {
    /// The largest header length accepted, as in the reference reader.
    public static let maximumHeaderLength = 100_000_000

    /// One tensor's entry.
    public struct Entry: Equatable, Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// Byte range relative to the start of the data buffer.
        public var dataRange: Range<Int>
    }

    /// Entries sorted by data offset.
    public var entries: [Entry]
    /// `__metadata__`, or nil when absent or null.
    public var metadata: [String: String]?
    /// Bytes before the data buffer: 8 + header length.
    public var dataStart: Int

    /// Validates the first bytes of a file of `fileSize` bytes (`bytes` may be the whole file or at
    /// least its first `8 + N` bytes). `file` is used in error messages only.
    public static func parse(_ bytes: UnsafeRawBufferPointer, fileSize: Int, file: String) throws -> SafetensorsHeader {
        guard fileSize >= 8, bytes.count >= 8 else { throw SafetensorsError.fileTooSmall(file: file, size: fileSize) }
        let n = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(maximumHeaderLength) else {
            throw SafetensorsError.headerTooLarge(file: file, length: n, limit: maximumHeaderLength)
        }
        let headerEnd = 8 + Int(n)
        guard headerEnd <= fileSize, headerEnd <= bytes.count else {
            throw SafetensorsError.headerPastEndOfFile(file: file, headerEnd: 8 + n, fileSize: fileSize)
        }
        let json: JSONValue
        do {
            json = try JSONParser.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<headerEnd]))
        } catch let e as JSONError {
            if let key = e.duplicateKey { throw SafetensorsError.duplicateKey(file: file, key: key) }
            throw SafetensorsError.invalidHeaderJSON(file: file, detail: "\(e.message) at header byte \(e.offset)")
        }
        guard let members = json.members else { throw SafetensorsError.headerNotObject(file: file) }

        var metadata: [String: String]?
        var entries: [Entry] = []
        entries.reserveCapacity(members.count)
        for member in members {
            if member.key == "__metadata__" {
                metadata = try parseMetadata(member.value, file: file)
            } else {
                entries.append(try parseEntry(member.key, member.value, file: file))
            }
        }
        entries.sort { ($0.dataRange.lowerBound, $0.dataRange.upperBound) < ($1.dataRange.lowerBound, $1.dataRange.upperBound) }
        var expected = 0
        for entry in entries {
            guard entry.dataRange.lowerBound == expected else {
                throw SafetensorsError.offsetsNotContiguous(
                    file: file, tensor: entry.name, expectedBegin: expected, found: entry.dataRange.lowerBound)
            }
            expected = entry.dataRange.upperBound
        }
        let bufferLength = fileSize - headerEnd
        guard expected == bufferLength else {
            throw SafetensorsError.bufferLengthMismatch(file: file, expected: expected, found: bufferLength)
        }
        return SafetensorsHeader(entries: entries, metadata: metadata, dataStart: headerEnd)
    }

    private static func parseMetadata(_ value: JSONValue, file: String) throws -> [String: String]? {
        if value == .null { return nil }
        guard let members = value.members else {
            throw SafetensorsError.invalidMetadata(file: file, detail: "must be an object of strings, found \(value.kindName)")
        }
        var map: [String: String] = [:]
        for m in members {
            guard let s = m.value.stringValue else {
                throw SafetensorsError.invalidMetadata(file: file, detail: "value of \"\(m.key)\" must be a string, found \(m.value.kindName)")
            }
            map[m.key] = s
        }
        return map
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, file: String) throws -> Entry {
        guard let fields = value.members else {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "entry must be an object, found \(value.kindName)")
        }
        for f in fields where !["dtype", "shape", "data_offsets"].contains(f.key) {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "unknown field \"\(f.key)\"")
        }
        guard let dtypeName = value["dtype"]?.stringValue else {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "missing or non-string \"dtype\"")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw SafetensorsError.unknownDType(file: file, tensor: name, dtype: dtypeName)
        }
        guard let dims = value["shape"]?.elements else {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "missing or non-array \"shape\"")
        }
        var shape: [Int] = []
        for d in dims {
            guard case let .number(text) = d, !text.contains(where: { ".eE".contains($0) }) else {
                throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "shape holds \(d.serialized()), expected non-negative integers")
            }
            guard !text.hasPrefix("-") else {
                throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "shape dimension \(text) is negative")
            }
            guard let v = d.intValue else {
                throw SafetensorsError.shapeOverflow(file: file, tensor: name, shape: "[" + dims.map { $0.serialized() }.joined(separator: ", ") + "]")
            }
            shape.append(v)
        }
        guard let byteCount = Shape.byteCount(shape, dtype: dtype) else {
            throw SafetensorsError.shapeOverflow(file: file, tensor: name, shape: "\(shape)")
        }
        guard let offsets = value["data_offsets"]?.elements, offsets.count == 2,
              let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= 0
        else {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "\"data_offsets\" must be two non-negative integers")
        }
        guard begin <= end else {
            throw SafetensorsError.invalidEntry(file: file, tensor: name, detail: "data_offsets begin \(begin) is after end \(end)")
        }
        guard end - begin == byteCount else {
            throw SafetensorsError.sizeMismatch(file: file, tensor: name, expected: byteCount, found: end - begin)
        }
        return Entry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }
}
