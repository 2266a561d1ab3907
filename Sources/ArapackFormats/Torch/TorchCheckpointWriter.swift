import ArapackTensor

/// Writes training-style checkpoints (`{"model": state_dict, "config": {...}, "step": n, …}`) that
/// `torch.load(path, weights_only=True)` loads. Tensors that share storage (a tied pair) are written as
/// one storage entry, so torch loads them sharing it. Output is deterministic and atomic.
public enum TorchCheckpointWriter {
    /// Storage class names by dtype (the dtypes typed storages can hold).
    static let storageClass: [DType: String] = Dictionary(uniqueKeysWithValues: TorchGlobals.storageTypes.map { ($1, $0) })

    /// Writes `stateDict` under `model`, followed by `extra` top-level entries (e.g. `config`, `step`).
    /// Throws for dtypes a typed storage cannot hold and on I/O failure (leaving nothing at `path`).
    /// With `replacing` false an existing file at `path` is left alone and the write fails.
    public static func write(stateDict: [(name: String, tensor: Tensor)], extra: [JSONValue.Member] = [], to path: String,
                             replacing: Bool = true) throws {
        let (keys, storages) = try storageKeys(stateDict, file: path)
        var p = PickleWriter()
        p.emptyDict()
        p.mark()
        p.string("model")
        p.global("collections", "OrderedDict")
        p.emptyTuple()
        p.reduce()
        if !stateDict.isEmpty {
            p.mark()
            for (i, (name, t)) in stateDict.enumerated() {
                p.string(name)
                tensorRecord(&p, t, key: keys[i])
            }
            p.setItems()
        }
        for m in extra where m.key != "model" {
            p.string(m.key)
            p.json(m.value)
        }
        p.setItems()
        let out = try AtomicFileWriter(destination: path)
        try writeArchive(pickle: p.finish(), storages: storages, into: out)
        try out.commit(replacing: replacing)
    }

    /// Writes one tensor as a whole `torch.save` archive at the current end of `out` (a DCP item).
    static func writeTensorArchive(_ t: Tensor, name: String, into out: AtomicFileWriter) throws {
        _ = try storageKeys([(name, t)], file: out.destination)
        var p = PickleWriter()
        tensorRecord(&p, t, key: 0)
        try writeArchive(pickle: p.finish(), storages: [t], into: out)
    }

    /// One storage per distinct view: a tensor viewing the same bytes as an earlier one reuses its key.
    private static func storageKeys(_ stateDict: [(name: String, tensor: Tensor)], file: String) throws -> (keys: [Int], storages: [Tensor]) {
        var keys: [Int] = []
        var storages: [Tensor] = []
        for (name, t) in stateDict {
            guard storageClass[t.dtype] != nil else {
                throw TorchError.badTensor(file: file, tensor: name, detail: "dtype \(t.dtype) cannot be written to a torch checkpoint")
            }
            if let i = storages.firstIndex(where: { $0.sharesStorage(with: t) }) {
                keys.append(i)
            } else {
                keys.append(storages.count)
                storages.append(t)
            }
        }
        return (keys, storages)
    }

    /// The zip torch writes: `archive/data.pkl`, format records, `archive/data/<key>` per storage.
    private static func writeArchive(pickle: [UInt8], storages: [Tensor], into out: AtomicFileWriter) throws {
        let zip = ZipWriter(out)
        try zip.add("archive/data.pkl", pickle)
        try zip.add("archive/.format_version", Array("1".utf8))
        try zip.add("archive/.storage_alignment", Array("64".utf8))
        try zip.add("archive/byteorder", Array("little".utf8))
        for (i, t) in storages.enumerated() { try t.withUnsafeBytes { try zip.add("archive/data/\(i)", $0) } }
        try zip.add("archive/version", Array("3\n".utf8))
        // torch writes a random id here; a digest of the pickle keeps the file deterministic.
        let id = pickle.withUnsafeBytes { SHA256.hex(of: $0) }.prefix(40)
        try zip.add("archive/.data/serialization_id", Array(id.utf8))
        try zip.finish()
    }

    private static func tensorRecord(_ p: inout PickleWriter, _ t: Tensor, key: Int) {
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.mark()
        p.mark()
        p.string("storage")
        p.global("torch", storageClass[t.dtype]!)
        p.string(String(key))
        p.string("cpu")
        p.int(t.elementCount)
        p.tuple()
        p.persistentID()
        p.int(0)
        p.mark()
        for d in t.shape { p.int(d) }
        p.tuple()
        p.mark()
        var stride = 1
        var strides: [Int] = []
        for d in t.shape.reversed() {
            strides.append(stride)
            stride *= d
        }
        for s in strides.reversed() { p.int(s) }
        p.tuple()
        p.bool(false)
        p.global("collections", "OrderedDict")
        p.emptyTuple()
        p.reduce()
        p.tuple()
        p.reduce()
    }
}
