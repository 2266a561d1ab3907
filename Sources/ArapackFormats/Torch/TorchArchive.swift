import ArapackTensor

/// The storages of one `torch.save` zip (a checkpoint, or one DCP chunk): finds the top folder and byte
/// order, unpickles `data.pkl` under an allow-list, and materialises tensor references. Storages are
/// cached per key while in use, so tensors that share one share the same `TensorStorage` object.
final class TorchArchive {
    let archive: ZipArchive
    /// The top folder with its trailing slash.
    let prefix: String
    let bigEndian: Bool
    let file: String
    private let storageLock = NSLockLike()
    /// Storages by key, held weakly: tensors alive at once share one object, and an inflated storage is freed
    /// with its last tensor (a check of every tensor in turn keeps one in memory, not all of them).
    nonisolated(unsafe) private var storages: [String: WeakStorage] = [:]
    final class WeakStorage { weak var storage: TensorStorage?; init(_ s: TensorStorage) { storage = s } }

    private init(archive: ZipArchive, prefix: String, bigEndian: Bool, file: String) {
        self.archive = archive
        self.prefix = prefix
        self.bigEndian = bigEndian
        self.file = file
    }

    /// The largest `data.pkl` read: a checkpoint's pickle holds its structure, not its tensors (a 70B-sized training
    /// checkpoint with AdamW state, 2,892 tensors, pickles to 194 KB; ROBUSTNESS.md), so 4 MiB leaves a twenty-fold margin
    /// and keeps a compressed pickle from costing more than a few hundred MB to read.
    static let maxPickleBytes = 4 << 20

    /// Checks the layout and unpickles `data.pkl`.
    static func open(_ archive: ZipArchive, file path: String, allowed: Set<PickleGlobal>?) throws -> (TorchArchive, PickleMachine.Result) {
        let pkl = try pickleEntry(of: archive, file: path)
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        for e in archive.entries where !e.name.hasPrefix(prefix) {
            throw TorchError.layout(file: path, detail: "entry \(e.name) is outside the top folder \(prefix)")
        }
        var bigEndian = false
        if let order = archive.entry(named: prefix + "byteorder") {
            let text = String(decoding: try archive.bytes(of: order.name), as: UTF8.self)
            guard text == "little" || text == "big" else { throw TorchError.layout(file: path, detail: "byteorder is \"\(text)\"") }
            bigEndian = text == "big"
        }
        let result = try unpickle(pkl, of: archive, file: path, allowed: allowed)
        return (TorchArchive(archive: archive, prefix: prefix, bigEndian: bigEndian, file: path), result)
    }

    /// The archive's `<top>/data.pkl` entry, its size checked against the zip directory before a byte is inflated
    /// (the inflater stops at that size).
    static func pickleEntry(of archive: ZipArchive, file path: String) throws -> ZipArchive.Entry {
        guard let pkl = archive.entries.first(where: { $0.name.hasSuffix("/data.pkl") && $0.name.split(separator: "/").count == 2 }) else {
            throw TorchError.layout(file: path, detail: "no <archive>/data.pkl entry")
        }
        guard pkl.size <= maxPickleBytes else {
            throw TorchError.layout(file: path, detail: "\(pkl.name) is \(pkl.size) bytes; arapack reads checkpoint pickles of at most "
                                    + "\(maxPickleBytes) (a 70B-sized training checkpoint's is 0.2 MB): refused unread")
        }
        return pkl
    }

    /// `pkl` unpickled under `allowed` (nil: every global kept as an inert record, for scanning) and the
    /// checkpoint limits.
    static func unpickle(_ pkl: ZipArchive.Entry, of archive: ZipArchive, file path: String, allowed: Set<PickleGlobal>?) throws -> PickleMachine.Result {
        do {
            return try archive.storage(of: pkl.name).withUnsafeBytes { try PickleMachine.load($0, allowed: allowed, limits: .checkpoint) }
        } catch let e as PickleError {
            throw TorchError.unsafePickle(file: path, detail: "data.pkl: \(e)")
        }
    }

    /// The storage entry of `r` must exist and hold exactly the declared elements.
    func checkStorage(_ r: TorchTensorRef) throws {
        guard let entry = archive.entry(named: prefix + "data/" + r.storageKey) else {
            throw TorchError.storage(file: file, key: r.storageKey, detail: "missing from the archive")
        }
        let (bytes, overflow) = r.storageElements.multipliedReportingOverflow(by: r.dtype.byteSize)
        guard !overflow, entry.size == bytes else {
            throw TorchError.storage(file: file, key: r.storageKey, detail: "holds \(entry.size) bytes, the pickle declares \(r.storageElements) \(r.dtype) elements (\(overflow ? "overflowing" : String(bytes)) bytes)")
        }
        // A strided view may name more elements than its storage holds (stride 0 broadcasts). Making it
        // contiguous allocates them all, so a hostile file could ask for terabytes: cap it by the archive size.
        let limit = 4 * max(archive.length, 64 << 20)
        let count = Shape.elementCount(r.shape) ?? Int.max
        guard r.isContiguous || count <= limit / r.dtype.byteSize else {
            throw TorchError.storage(file: file, key: r.storageKey, detail: "a strided view of \(r.shape) (\(count) elements) over \(r.storageElements) stored elements would need more than \(limit) bytes; refused")
        }
    }

    /// The tensor `r` refers to: a zero-copy view when contiguous, a gathered copy otherwise.
    func materialize(_ r: TorchTensorRef) throws -> Tensor {
        let size = r.dtype.byteSize
        let storage = try storageLock.withLock {
            if let s = storages[r.storageKey]?.storage { return s }
            var s = try archive.storage(of: prefix + "data/" + r.storageKey)
            if bigEndian, size > 1 { s = Self.byteSwapped(s, elementSize: size) }
            storages[r.storageKey] = WeakStorage(s)
            return s
        }
        if r.shape.contains(0) { return try Tensor(dtype: r.dtype, shape: r.shape, storage: TensorStorage(byteCount: 0)) }
        if r.isContiguous {
            return try Tensor(dtype: r.dtype, shape: r.shape, storage: storage, byteOffset: r.offset * size)
        }
        let count = Shape.elementCount(r.shape)!
        let out = TensorStorage(byteCount: count * size)
        storage.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                var index = [Int](repeating: 0, count: r.shape.count)
                var source = r.offset
                for i in 0..<count {
                    let from = source * size, to = i * size
                    UnsafeMutableRawBufferPointer(rebasing: dst[to..<(to + size)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: src[from..<(from + size)]))
                    var d = r.shape.count - 1
                    while d >= 0 {
                        index[d] += 1
                        source += r.stride[d]
                        if index[d] < r.shape[d] { break }
                        source -= r.stride[d] * r.shape[d]
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return try Tensor(dtype: r.dtype, shape: r.shape, storage: out)
    }

    /// A copy of `storage` with every `elementSize`-byte element reversed (big-endian files).
    private static func byteSwapped(_ storage: TensorStorage, elementSize: Int) -> TensorStorage {
        let out = TensorStorage(byteCount: storage.count)
        storage.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                var i = 0
                while i + elementSize <= src.count {
                    for b in 0..<elementSize { dst[i + b] = src[i + elementSize - 1 - b] }
                    i += elementSize
                }
            }
        }
        return out
    }

}
