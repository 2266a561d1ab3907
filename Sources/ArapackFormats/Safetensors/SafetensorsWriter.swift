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
        tensors.sorted { a, b in
            if a.tensor.dtype.writeRank != b.tensor.dtype.writeRank { return a.tensor.dtype.writeRank > b.tensor.dtype.writeRank }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
    }

    /// The 8-byte length plus padded JSON header for `tensors` (already in layout order).
    public static func headerBytes(_ ordered: [(name: String, tensor: Tensor)], metadata: [String: String]) -> [UInt8] {
        var meta = metadata
        meta["format"] = meta["format"] ?? "pt"
        var members: [JSONValue.Member] = [
            .init("__metadata__", .object(meta.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { .init($0, .string(meta[$0]!)) }))
        ]
        var offset = 0
        for (name, t) in ordered {
            members.append(.init(name, .object([
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
        try checkNames(tensors.map(\.name), file: path)
        let ordered = layoutOrder(tensors)
        let out = try AtomicFileWriter(destination: path)
        try out.write(headerBytes(ordered, metadata: metadata))
        for (_, t) in ordered { try t.withUnsafeBytes { try out.write($0) } }
        try out.commit()
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
        try checkNames(tensors.map(\.name), file: directory)
        let ordered = layoutOrder(tensors)
        let total = ordered.reduce(0) { $0 + $1.tensor.byteCount }
        guard let limit = maxShardSize, total > limit else {
            try write(ordered, metadata: metadata, to: directory + "/\(stem).safetensors")
            return ["\(stem).safetensors"]
        }
        var shards: [[(name: String, tensor: Tensor)]] = [[]]
        var size = 0
        for item in ordered {
            if size > 0, size + item.tensor.byteCount > limit {
                shards.append([])
                size = 0
            }
            shards[shards.count - 1].append(item)
            size += item.tensor.byteCount
        }
        var names: [String] = []
        var weightMap: [(String, String)] = []
        for (i, shard) in shards.enumerated() {
            let name = shardFileName(stem: stem, index: i + 1, count: shards.count)
            try write(shard, metadata: metadata, to: directory + "/" + name)
            names.append(name)
            weightMap += shard.map { ($0.name, name) }
        }
        weightMap.sort { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }
        let index = JSONValue.object([
            .init("metadata", .object([.init("total_size", .int(total))])),
            .init("weight_map", .object(weightMap.map { .init($0.0, .string($0.1)) })),
        ])
        let indexName = "\(stem).safetensors.index.json"
        let out = try AtomicFileWriter(destination: directory + "/" + indexName)
        try out.write(index.serialized(pretty: true) + "\n")
        try out.commit()
        return names + [indexName]
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
