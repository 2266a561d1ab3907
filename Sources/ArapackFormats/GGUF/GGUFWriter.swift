import ArapackTensor

/// A tensor to be written into a GGUF file: its entry now, its bytes produced when the writer reaches it.
public struct PendingGGUFTensor {
    public var name: String
    /// PyTorch order, outermost first (`[rows, columns]`); the file lists them innermost first.
    public var shape: [Int]
    public var type: GGUF.TensorType
    /// Appends exactly `byteCount` bytes to the writer.
    public var produce: (AtomicFileWriter) throws -> Void

    public init(name: String, shape: [Int], type: GGUF.TensorType, produce: @escaping (AtomicFileWriter) throws -> Void) {
        self.name = name
        self.shape = shape
        self.type = type
        self.produce = produce
    }

    public var byteCount: Int { type.byteCount(elements: shape.reduce(1, *)) ?? 0 }
}

/// Writes GGUF v3 files (docs/formats.md): header, metadata in the order given (`general.alignment` added first after
/// `general.architecture`), tensor infos in the order given, the data section aligned, each tensor at an aligned
/// offset with zero padding between. Streams: each tensor's bytes are produced while writing; written atomically.
public enum GGUFWriter {
    @discardableResult
    public static func write(metadata: [(key: String, value: GGUF.Value)], tensors: [PendingGGUFTensor], to path: String,
                             replacing: Bool) throws -> WrittenFile {
        let alignment = GGUF.defaultAlignment
        var header = Encoder()
        header.bytes += GGUF.magic
        header.u32(GGUF.version)
        header.u64(UInt64(tensors.count))
        header.u64(UInt64(metadata.count + 1))
        for (i, kv) in metadata.enumerated() {
            header.keyValue(kv.key, kv.value)
            if i == 0 { header.keyValue("general.alignment", .uint32(UInt32(alignment))) }
        }
        var offset = 0
        var seen = Set<String>()
        for t in tensors {
            precondition(seen.insert(t.name).inserted, "\(t.name) twice")
            precondition(t.type.byteCount(elements: t.shape.reduce(1, *)) != nil, "\(t.name): \(t.shape) is not whole \(t.type.name) blocks")
            header.string(t.name)
            header.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { header.u64(UInt64(d)) }
            header.u32(t.type.rawValue)
            header.u64(UInt64(offset))
            offset += padded(t.byteCount, alignment)
        }
        header.bytes += [UInt8](repeating: 0, count: padded(header.bytes.count, alignment) - header.bytes.count)
        let out = try AtomicFileWriter(destination: path, hashing: true)
        try out.write(header.bytes)
        for t in tensors {
            let start = out.bytesWritten
            try t.produce(out)
            precondition(out.bytesWritten - start == t.byteCount, "\(t.name): produced \(out.bytesWritten - start) bytes, declared \(t.byteCount)")
            try out.write([UInt8](repeating: 0, count: padded(t.byteCount, alignment) - t.byteCount))
        }
        try out.commit(replacing: replacing)
        return WrittenFile(name: splitPath(path).1, size: out.bytesWritten, sha256: out.sha256!)
    }

    static func padded(_ n: Int, _ alignment: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// Little-endian encoding of GGUF's scalars, strings and key/value pairs.
    struct Encoder {
        var bytes: [UInt8] = []
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        mutating func string(_ s: String) {
            u64(UInt64(s.utf8.count))
            bytes += s.utf8
        }
        mutating func keyValue(_ key: String, _ value: GGUF.Value) {
            string(key)
            switch value {
            case .strings, .float32s, .int32s: u32(GGUF.Value.arrayCode)
            default: break
            }
            u32(value.typeCode)
            switch value {
            case let .uint32(v): u32(v)
            case let .int32(v): u32(UInt32(bitPattern: v))
            case let .uint64(v): u64(v)
            case let .float32(v): u32(v.bitPattern)
            case let .bool(v): bytes.append(v ? 1 : 0)
            case let .string(s): string(s)
            case let .strings(a): u64(UInt64(a.count)); for s in a { string(s) }
            case let .float32s(a): u64(UInt64(a.count)); for v in a { u32(v.bitPattern) }
            case let .int32s(a): u64(UInt64(a.count)); for v in a { u32(UInt32(bitPattern: v)) }
            }
        }
    }
}
