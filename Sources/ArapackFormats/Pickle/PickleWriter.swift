/// Emits protocol-2 pickles of plain values and torch tensor records, as `torch.save` lays them out.
struct PickleWriter {
    private(set) var bytes: [UInt8] = [0x80, 0x02]

    mutating func finish() -> [UInt8] {
        bytes.append(0x2E)
        return bytes
    }

    mutating func none() { bytes.append(0x4E) }
    mutating func bool(_ b: Bool) { bytes.append(b ? 0x88 : 0x89) }

    mutating func int(_ v: Int) {
        if (0..<256).contains(v) {
            bytes += [0x4B, UInt8(v)]
        } else if (0..<65536).contains(v) {
            bytes += [0x4D, UInt8(v & 0xFF), UInt8(v >> 8)]
        } else if (Int(Int32.min)...Int(Int32.max)).contains(v) {
            bytes.append(0x4A)
            bytes += withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) }
        } else {
            bytes += [0x8A, 8]
            bytes += withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) }
        }
    }

    mutating func float(_ v: Double) {
        bytes.append(0x47)
        bytes += withUnsafeBytes(of: v.bitPattern.bigEndian) { Array($0) }
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        bytes.append(0x58)
        bytes += withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { Array($0) }
        bytes += utf8
    }

    mutating func global(_ module: String, _ name: String) {
        bytes.append(0x63)
        bytes += Array("\(module)\n\(name)\n".utf8)
    }

    mutating func mark() { bytes.append(0x28) }
    mutating func tuple() { bytes.append(0x74) }
    mutating func emptyTuple() { bytes.append(0x29) }
    mutating func reduce() { bytes.append(0x52) }
    mutating func emptyDict() { bytes.append(0x7D) }
    mutating func setItems() { bytes.append(0x75) }
    mutating func emptyList() { bytes.append(0x5D) }
    mutating func appends() { bytes.append(0x65) }
    mutating func persistentID() { bytes.append(0x51) }
    mutating func newObject() { bytes.append(0x81) }
    mutating func build() { bytes.append(0x62) }

    /// A JSON value as the equivalent Python value (objects → dict, arrays → list, integers → int).
    mutating func json(_ v: JSONValue) {
        switch v {
        case .null: none()
        case let .bool(b): bool(b)
        case let .number(text): if let i = v.intValue { int(i) } else { float(Double(text) ?? .nan) }
        case let .string(s): string(s)
        case let .array(items):
            emptyList()
            guard !items.isEmpty else { return }
            mark()
            for i in items { json(i) }
            appends()
        case let .object(members):
            emptyDict()
            guard !members.isEmpty else { return }
            mark()
            for m in members {
                string(m.key)
                json(m.value)
            }
            setItems()
        }
    }
}
