import ArapackTensor

/// Writes safetensors files byte-for-byte as the reference `safetensors` package lays them out:
/// tensors by dtype rank descending then name (byte order), contiguous offsets, compact JSON header
/// padded with spaces to a multiple of 8, `__metadata__` first with `format: pt` always present and
/// keys sorted. Files are written atomically (temporary sibling, fsync, rename).
public enum SafetensorsWriter {
    /// Names a tensor may not have.
    static let reservedName = "__metadata__"

    /// Orders `tensors` as they will be laid out in the file.
    public static func layoutOrder(_ tensors: [(name: String, tensor: Tensor)]) -> [(name: String, tensor: Tensor)] {
        tensors.sorted { precedes($0.name, $0.tensor.dtype, $1.name, $1.tensor.dtype) }
    }

    /// Orders `items` as they will be laid out in the file.
    public static func layoutOrder(_ items: [PendingTensor]) -> [PendingTensor] {
        items.sorted { precedes($0.name, $0.dtype, $1.name, $1.dtype) }
    }

    /// The reference layout: dtype rank descending, then name in byte order.
    private static func precedes(_ a: String, _ da: DType, _ b: String, _ db: DType) -> Bool {
        da.writeRank != db.writeRank ? da.writeRank > db.writeRank : a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    /// The 8-byte length plus padded JSON header for `ordered` (already in layout order).
    public static func headerBytes(_ ordered: [PendingTensor], metadata: [String: String]) -> [UInt8] {
        var meta = metadata
        meta["format"] = meta["format"] ?? "pt"
        var members: [JSONValue.Member] = [
            .init("__metadata__", .object(meta.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { .init($0, .string(meta[$0]!)) }))
        ]
        var offset = 0
        for t in ordered {
            members.append(.init(t.name, .object([
                .init("dtype", .string(t.dtype.name)),
                .init("shape", .array(t.shape.map { .int($0) })),
                .init("data_offsets", .array([.int(offset), .int(offset + t.byteCount)])),
            ])))
            offset += t.byteCount
        }
        var json = Array(JSONValue.object(members).serialized().utf8)
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8))
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        out.append(contentsOf: json)
        return out
    }

    /// Writes one file at `path`. `metadata` is merged over `{"format": "pt"}`.
    /// Throws on duplicate or reserved names and on I/O failure (leaving nothing at `path`).
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        try write(tensors.map { PendingTensor(name: $0.name, tensor: $0.tensor) }, metadata: metadata, to: path)
    }

    /// Writes one file at `path` from tensors produced while writing; returns its size and SHA-256.
    @discardableResult
    public static func write(_ items: [PendingTensor], metadata: [String: String] = [:], to path: String) throws -> WrittenFile {
        try checkNames(items.map(\.name), file: path)
        let ordered = layoutOrder(items)
        let out = try AtomicFileWriter(destination: path, hashing: true)
        try out.write(headerBytes(ordered, metadata: metadata))
        for t in ordered {
            let start = out.bytesWritten
            try t.produce(out)
            precondition(out.bytesWritten - start == t.byteCount, "\(t.name): produced \(out.bytesWritten - start) bytes, declared \(t.byteCount)")
        }
        try out.commit()
        return WrittenFile(name: splitPath(path).1, size: out.bytesWritten, sha256: out.sha256!)
    }

    /// Writes `tensors` into `directory` as `<stem>.safetensors`, or, when their bytes exceed
    /// `maxShardSize`, as `<stem>-0000k-of-0000n.safetensors` shards plus `<stem>.safetensors.index.json`.
    /// Shards are filled greedily in layout order; a tensor larger than the limit gets a shard of its own.
    /// Returns the file names written (shards first, then the index).
    @discardableResult
    public static func writeSharded(
        _ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:],
        directory: String, stem: String = "model", maxShardSize: Int?
    ) throws -> [String] {
        try writeSharded(tensors.map { PendingTensor(name: $0.name, tensor: $0.tensor) }, metadata: metadata,
                         directory: directory, stem: stem, maxShardSize: maxShardSize).map(\.name)
    }

    /// `writeSharded` for tensors produced while writing; returns every file written with its size and SHA-256.
    public static func writeSharded(
        _ items: [PendingTensor], metadata: [String: String] = [:],
        directory: String, stem: String = "model", maxShardSize: Int?
    ) throws -> [WrittenFile] {
        try checkNames(items.map(\.name), file: directory)
        let ordered = layoutOrder(items)
        let total = ordered.reduce(0) { $0 + $1.byteCount }
        guard let limit = maxShardSize, total > limit else {
            return [try write(ordered, metadata: metadata, to: directory + "/\(stem).safetensors")]
        }
        var shards: [[PendingTensor]] = [[]]
        var size = 0
        for item in ordered {
            if size > 0, size + item.byteCount > limit {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(item)
            size += item.byteCount
        }
        var written: [WrittenFile] = []
        var weightMap: [(String, String)] = []
        for (i, shard) in shards.enumerated() {
            let name = shardFileName(stem: stem, index: i + 1, count: shards.count)
            written.append(try write(shard, metadata: metadata, to: directory + "/" + name))
            weightMap += shard.map { ($0.name, name) }
        }
        weightMap.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let index = JSONValue.object([
            .init("metadata", .object([.init("total_size", .int(total))])),
            .init("weight_map", .object(weightMap.map { .init($0.0, .string($0.1)) })),
        ])
        written.append(try writeText(index.serialized(pretty: true) + "\n", to: directory + "/\(stem).safetensors.index.json"))
        return written
    }

    /// `model-00001-of-00003.safetensors` style names (at least five digits, as transformers writes them).
    public static func shardFileName(stem: String, index: Int, count: Int) -> String {
        func pad(_ n: Int) -> String { let s = String(n); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        return "\(stem)-\(pad(index))-of-\(pad(count)).safetensors"
    }

    private static func checkNames(_ names: [String], file: String) throws {
        var seen = Set<String>()
        for n in names {
            guard n != reservedName else {
                throw SafetensorsError.invalidTensorName(file: file, tensor: n, detail: "the name is reserved for metadata")
            }
            guard seen.insert(n).inserted else { throw SafetensorsError.duplicateKey(file: file, key: n) }
        }
    }
}

/// A tensor to be written: its header entry now, its bytes produced when the writer reaches it.
public struct PendingTensor {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Appends exactly `byteCount` bytes to the writer.
    public var produce: (AtomicFileWriter) throws -> Void

    public init(name: String, dtype: DType, shape: [Int], produce: @escaping (AtomicFileWriter) throws -> Void) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.produce = produce
    }

    /// A tensor already in memory (or mapped).
    public init(name: String, tensor: Tensor) {
        self.init(name: name, dtype: tensor.dtype, shape: tensor.shape) { out in try tensor.withUnsafeBytes { try out.write($0) } }
    }

    public var byteCount: Int { Shape.byteCount(shape, dtype: dtype) ?? 0 }
}

/// A file written into a folder: its name there, size and SHA-256.
public struct WrittenFile: Equatable, Sendable {
    public var name: String
    public var size: Int
    public var sha256: String
    public init(name: String, size: Int, sha256: String) {
        self.name = name
        self.size = size
        self.sha256 = sha256
    }
}

/// Writes `text` atomically at `path`; returns its size and SHA-256.
@discardableResult
public func writeText(_ text: String, to path: String) throws -> WrittenFile {
    try writeBytes(Array(text.utf8), to: path)
}

@discardableResult
/// Writes bytes atomically; the written file is named by its last path component unless `name` is given.
public func writeBytes(_ bytes: [UInt8], to path: String, name: String? = nil) throws -> WrittenFile {
    // Buffers no larger than the bytes, rounded up to 4 KiB (most are a few KiB of JSON), within the usual size.
    let size = min(AtomicFileWriter.defaultBufferSize, max(4096, (bytes.count + 4095) / 4096 * 4096))
    let out = try AtomicFileWriter(destination: path, bufferSize: size, hashing: true)
    try bytes.withUnsafeBytes { try out.write($0) }
    try out.commit()
    return WrittenFile(name: name ?? splitPath(path).1, size: out.bytesWritten, sha256: out.sha256!)
}
