/// Emits protocol-2 pickles of plain values and torch tensor records, as `torch.save` lays them out.
struct PickleWriter {
    private(set) var bytes: [UInt8] = [PickleOpcode.proto.rawValue, 2]

    mutating func finish() -> [UInt8] {
        emit(.stop)
        return bytes
    }

    mutating func none() { emit(.pushNone) }
    mutating func bool(_ b: Bool) { emit(b ? .newTrue : .newFalse) }

    mutating func int(_ v: Int) {
        if (0..<256).contains(v) {
            emit(.binInt1)
            bytes.append(UInt8(v))
        } else if (0..<65536).contains(v) {
            emit(.binInt2)
            bytes += [UInt8(v & 0xFF), UInt8(v >> 8)]
        } else if (Int(Int32.min)...Int(Int32.max)).contains(v) {
            emit(.binInt)
            bytes += withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) }
        } else {
            emit(.long1)
            bytes.append(8)
            bytes += withUnsafeBytes(of: Int64(v).littleEndian) { Array($0) }
        }
    }

    mutating func float(_ v: Double) {
        emit(.binFloat)
        bytes += withUnsafeBytes(of: v.bitPattern.bigEndian) { Array($0) }
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        emit(.binUnicode)
        bytes += withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { Array($0) }
        bytes += utf8
    }

    mutating func global(_ module: String, _ name: String) {
        emit(.global)
        bytes += Array("\(module)\n\(name)\n".utf8)
    }

    mutating func mark() { emit(.mark) }
    mutating func tuple() { emit(.tuple) }
    mutating func emptyTuple() { emit(.emptyTuple) }
    mutating func reduce() { emit(.reduce) }
    mutating func emptyDict() { emit(.emptyDict) }
    mutating func setItems() { emit(.setItems) }
    mutating func emptyList() { emit(.emptyList) }
    mutating func appends() { emit(.appends) }
    mutating func persistentID() { emit(.binPersID) }
    mutating func newObject() { emit(.newObj) }
    mutating func build() { emit(.build) }

    private mutating func emit(_ op: PickleOpcode) { bytes.append(op.rawValue) }

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
