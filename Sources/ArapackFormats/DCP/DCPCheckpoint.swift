import ArapackTensor

/// Why a torch.distributed.checkpoint directory was refused.
public enum DCPError: Error, Equatable, CustomStringConvertible, Sendable {
    case metadata(directory: String, detail: String)
    case chunk(directory: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .metadata(directory, detail): return "\(directory)/.metadata: \(detail)"
        case let .chunk(directory, tensor, detail): return "\(directory): tensor \"\(tensor)\": \(detail)"
        }
    }
}

/// A torch.distributed.checkpoint directory (`.metadata` + `__<rank>_<n>.distcp`), as FSDP's sharded
/// state dict saves it, read without torch.
///
/// `.metadata` goes through the restricted pickle machine (DCP dataclasses as inert records). Every tensor's
/// chunks must lie inside it, not overlap and cover it exactly; each chunk's bytes range must lie inside its
/// file. A tensor is assembled from its chunks when asked for; a single-chunk tensor is a zero-copy view.
public final class DCPCheckpoint: TensorSource {
    /// One stored piece of a tensor.
    public struct Chunk: Sendable {
        public var offsets: [Int]
        public var sizes: [Int]
        public var file: String
        public var byteRange: Range<Int>
    }

    /// A tensor as `.metadata` declares it.
    public struct Entry: Sendable {
        public var fqn: String
        public var dtype: DType
        public var shape: [Int]
        public var chunks: [Chunk]
    }

    public let directory: String
    /// Tensor entries by fully qualified name (`model.…`, `optim.…`), in metadata order.
    public let entries: [Entry]
    /// Names of non-tensor (bytes) items.
    public let bytesItems: [String]
    /// The prefix of the model's tensors (`model.`), or empty when the checkpoint is a bare state dict.
    public let modelPrefix: String
    public let tensorNames: [String]
    private let byName: [String: Int]
    private let lock = NSLockLike()
    nonisolated(unsafe) private var files: [String: MappedFile] = [:]

    public var formatName: String { "dcp" }
    public var filePaths: [String] {
        [directory + "/.metadata"] + Set(entries.flatMap { $0.chunks.map(\.file) }).sorted().map { directory + "/" + $0 }
    }
    public func filePath(of name: String) -> String? { nil }

    /// Opens and validates the directory.
    /// `.metadata` and every data file must be regular files inside the folder: a symlink (which could lead
    /// outside it) or a FIFO is refused before it is opened.
    public convenience init(directory: String) throws {
        func regular(_ name: String) throws -> Int {
            let kind = try FileKind(atPath: directory + "/" + name)
            guard case let .regular(size) = kind else {
                throw DCPError.metadata(directory: directory, detail: "\(name.escapingControlCharacters) is " +
                                        (kind == .symlink ? "a symlink" : "not a regular file") + "; a DCP folder holds regular files only")
            }
            return size
        }
        _ = try regular(".metadata")
        let meta = try MappedFile(path: directory + "/.metadata")
        try self.init(directory: directory, metadata: meta) { try regular($0) }
    }

    /// Validates `.metadata` bytes; `fileSize` gives the size of a data file the metadata names (the fuzz
    /// target reads metadata this way, without a folder).
    public init(directory: String, metadata meta: MappedFile, fileSize: (String) throws -> Int) throws {
        self.directory = directory
        let loaded: PickleMachine.Result
        do {
            loaded = try meta.withUnsafeBytes { try PickleMachine.load($0, allowed: DCPGlobals.allowList, limits: .metadata(bytes: $0.count)) }
        } catch let e as PickleError {
            throw DCPError.metadata(directory: directory, detail: "\(e)")
        }
        // The metadata's containers live until the entries are read out of them (end of init).
        let root = loaded.value
        defer { withExtendedLifetime(loaded.arena) {} }
        func fail(_ d: String) -> DCPError { DCPError.metadata(directory: directory, detail: d) }
        guard let top = Self.fields(root, "Metadata"), case let .dict(sdm)? = top["state_dict_metadata"], case let .dict(storage)? = top["storage_data"] else {
            throw fail("not a DCP Metadata record with state_dict_metadata and storage_data")
        }
        // (fqn, chunk offsets) → where the bytes are.
        var locations: [String: (String, Range<Int>)] = [:]
        var fileSizes: [String: Int] = [:]
        for (k, v) in storage.entries {
            // Bytes items have no offset (absent or None).
            guard let index = Self.fields(k, "MetadataIndex"), let fqn = index["fqn"]?.stringValue else {
                throw fail("storage_data key is not a MetadataIndex(fqn, …) but a \(k.kindName)")
            }
            let offsets = index["offset"]?.sequence?.compactMap(\.intValue) ?? []
            guard let info = Self.fields(v, "_StorageInfo"), let path = info["relative_path"]?.stringValue,
                  let offset = info["offset"]?.intValue, let length = info["length"]?.intValue, offset >= 0, length >= 0
            else { throw fail("storage_data entry of \"\(fqn)\" is not a _StorageInfo(relative_path, offset, length) but a \(v.kindName)") }
            if let t = info["transform_descriptors"], t.sequence.map({ !$0.isEmpty }) ?? (t.kindName != "None") {
                throw fail("storage of \"\(fqn)\" uses transform descriptors, which arapack does not read")
            }
            guard !path.isEmpty, !path.contains("/"), !path.contains("\\"), path != "..", path != "." else {
                throw fail("storage path \"\(path)\" of \"\(fqn)\" is not a plain file name in the checkpoint folder")
            }
            if fileSizes[path] == nil {
                do { fileSizes[path] = try fileSize(path) } catch {
                    throw DCPError.chunk(directory: directory, tensor: fqn, detail: "its file \(path) cannot be read: \(error)")
                }
            }
            guard offset <= fileSizes[path]!, length <= fileSizes[path]! - offset else {
                throw DCPError.chunk(directory: directory, tensor: fqn, detail: "bytes \(offset)..<\(offset + length) lie outside \(path) (\(fileSizes[path]!) bytes)")
            }
            locations["\(fqn)|\(offsets)"] = (path, offset..<(offset + length))
        }
        var entries: [Entry] = []
        var bytesItems: [String] = []
        for (k, v) in sdm.entries {
            guard let fqn = k.stringValue else { throw fail("a state_dict_metadata key is not a string") }
            if Self.fields(v, "BytesStorageMetadata") != nil || (v.objectValue?.callable.name == "BytesStorageMetadata") {
                bytesItems.append(fqn)
                continue
            }
            guard let t = Self.fields(v, "TensorStorageMetadata"), let size = t["size"]?.sequence?.compactMap(\.intValue),
                  let chunkList = t["chunks"]?.sequence, let dtype = Self.dtype(of: t["properties"])
            else { throw fail("entry \"\(fqn)\" is neither tensor nor bytes metadata") }
            var chunks: [Chunk] = []
            for c in chunkList {
                guard let cf = Self.fields(c, "ChunkStorageMetadata"), let offsets = cf["offsets"]?.sequence?.compactMap(\.intValue),
                      let sizes = cf["sizes"]?.sequence?.compactMap(\.intValue)
                else { throw fail("malformed chunk of \"\(fqn)\"") }
                guard let (file, range) = locations["\(fqn)|\(offsets)"] else {
                    throw DCPError.chunk(directory: directory, tensor: fqn, detail: "chunk at offsets \(offsets) has no storage entry")
                }
                chunks.append(Chunk(offsets: offsets, sizes: sizes, file: file, byteRange: range))
            }
            try Self.checkCoverage(fqn: fqn, shape: size, chunks: chunks, directory: directory)
            entries.append(Entry(fqn: fqn, dtype: dtype, shape: size, chunks: chunks))
        }
        self.entries = entries
        self.bytesItems = bytesItems
        byName = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.fqn, $0) })
        let prefix = entries.contains { $0.fqn.hasPrefix("model.") } ? "model." : ""
        modelPrefix = prefix
        tensorNames = entries.map(\.fqn).filter { prefix.isEmpty ? !$0.hasPrefix("optim.") : $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// The entry of a model tensor (name without the model prefix) or of any fqn.
    public func entry(named name: String) throws -> Entry {
        guard let i = byName[modelPrefix + name] ?? byName[name] else {
            throw DCPError.chunk(directory: directory, tensor: name, detail: "not in the checkpoint")
        }
        return entries[i]
    }

    public func descriptor(named name: String) throws -> TensorDescriptor {
        let e = try entry(named: name)
        return TensorDescriptor(dtype: e.dtype, shape: e.shape)
    }

    public func tensor(named name: String) throws -> Tensor {
        let e = try entry(named: name)
        let pieces = try e.chunks.map { try (chunk: $0, tensor: chunkTensor($0, of: e)) }
        if pieces.count == 1 { return pieces[0].tensor }
        let size = e.dtype.byteSize
        let out = TensorStorage(byteCount: Shape.byteCount(e.shape, dtype: e.dtype)!)
        var strides = [Int](repeating: 1, count: e.shape.count)
        for d in stride(from: e.shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * e.shape[d + 1] }
        out.withUnsafeMutableBytes { dst in
            for (c, t) in pieces {
                let rowElements = c.sizes.last ?? 1
                let rows = c.sizes.dropLast().reduce(1, *)
                t.withUnsafeBytes { src in
                    var index = [Int](repeating: 0, count: max(c.sizes.count - 1, 0))
                    for r in 0..<rows {
                        var target = 0
                        for d in 0..<index.count { target += (c.offsets[d] + index[d]) * strides[d] }
                        if let last = c.offsets.last, !c.offsets.isEmpty { target += last }
                        let from = r * rowElements * size
                        UnsafeMutableRawBufferPointer(rebasing: dst[(target * size)..<((target + rowElements) * size)])
                            .copyMemory(from: UnsafeRawBufferPointer(rebasing: src[from..<(from + rowElements * size)]))
                        var d = index.count - 1
                        while d >= 0 {
                            index[d] += 1
                            if index[d] < c.sizes[d] { break }
                            index[d] = 0
                            d -= 1
                        }
                    }
                }
            }
        }
        return try Tensor(dtype: e.dtype, shape: e.shape, storage: out)
    }

    /// Reads the one-tensor `torch.save` item a chunk is.
    private func chunkTensor(_ c: Chunk, of e: Entry) throws -> Tensor {
        let mapped = try lock.withLock {
            if let f = files[c.file] { return f }
            let f = try MappedFile(path: directory + "/" + c.file)
            files[c.file] = f
            return f
        }
        let label = "\(directory)/\(c.file) at byte \(c.byteRange.lowerBound)"
        let archive = try ZipArchive(file: mapped, range: c.byteRange, label: label)
        let (reader, result) = try TorchArchive.open(archive, file: label, allowed: TorchGlobals.checkpointAllowList)
        guard let ref = try TorchTensorRef(result.value, file: label, name: e.fqn) else {
            throw DCPError.chunk(directory: directory, tensor: e.fqn, detail: "item in \(c.file) at byte \(c.byteRange.lowerBound) holds a \(result.value.kindName), not a tensor")
        }
        guard ref.dtype == e.dtype, ref.shape == c.sizes else {
            throw DCPError.chunk(directory: directory, tensor: e.fqn, detail: "chunk in \(c.file) is \(ref.dtype) \(ref.shape), metadata declares \(e.dtype) \(c.sizes)")
        }
        try reader.checkStorage(ref)
        return try reader.materialize(ref)
    }

    // MARK: metadata helpers

    /// The fields of a dataclass record named `type`: its BUILD state dict (or the dict of a (dict, slots) pair).
    static func fields(_ v: PickleValue, _ type: String) -> PickleDict? {
        guard case let .object(o) = v, o.callable.name == type else { return nil }
        if case let .dict(d)? = o.state { return d }
        if case let .tuple(t)? = o.state, t.count == 2 {
            if case let .dict(d) = t[0] { return d }
            if case let .dict(d) = t[1] { return d }
        }
        return PickleDict()
    }

    /// The dtype in a TensorProperties record (state as a dict, or the tuple torch's __getstate__ makes).
    static func dtype(of properties: PickleValue?) -> DType? {
        guard case let .object(o)? = properties else { return nil }
        var dtype: PickleValue?
        if case let .dict(d)? = o.state { dtype = d["dtype"] }
        if case let .tuple(t)? = o.state { dtype = t.first }
        guard case let .global(g)? = dtype, g.module == "torch" else { return nil }
        return TorchGlobals.dtypes[g.name]
    }

    /// Most chunks one tensor may have; chunks split along more than the first dimension are compared pairwise,
    /// so there may be at most `maximumPairwiseChunks` of those.
    public static let maximumChunks = 1 << 20
    public static let maximumPairwiseChunks = 4096

    /// Chunks must lie inside the tensor, not overlap, and cover it exactly. Row shards (every chunk spanning
    /// the whole tensor past the first dimension, as FSDP writes them) are checked in O(n log n) by sorting their
    /// first-dimension intervals; other layouts pairwise, bounded by `maximumPairwiseChunks`.
    static func checkCoverage(fqn: String, shape: [Int], chunks: [Chunk], directory: String) throws {
        func fail(_ d: String) -> DCPError { DCPError.chunk(directory: directory, tensor: fqn, detail: d) }
        guard let total = Shape.elementCount(shape) else { throw fail("shape \(shape) overflows") }
        guard chunks.count <= maximumChunks else { throw fail("\(chunks.count) chunks; at most \(maximumChunks) per tensor") }
        var covered = 0
        for c in chunks {
            guard c.offsets.count == shape.count, c.sizes.count == shape.count else { throw fail("chunk rank differs from the tensor's") }
            for d in 0..<shape.count where c.offsets[d] < 0 || c.sizes[d] < 0 || c.offsets[d] > shape[d] || c.sizes[d] > shape[d] - c.offsets[d] {
                throw fail("chunk at offsets \(c.offsets) with sizes \(c.sizes) lies outside the tensor \(shape)")
            }
            // Inside the tensor, so each chunk holds at most `total` elements; past `total` in all, some overlap.
            covered += Shape.elementCount(c.sizes) ?? 0
            guard covered <= total else { throw fail("chunks cover more than the tensor's \(total) elements (some overlap)") }
        }
        let rowShards = chunks.allSatisfy { c in (1..<max(shape.count, 1)).allSatisfy { c.offsets[$0] == 0 && c.sizes[$0] == shape[$0] } }
        if rowShards && !shape.isEmpty {
            let rows = chunks.filter { c in c.sizes.allSatisfy { $0 > 0 } }.sorted { $0.offsets[0] < $1.offsets[0] }
            for (a, b) in zip(rows, rows.dropFirst()) where b.offsets[0] < a.offsets[0] + a.sizes[0] {
                throw fail("chunks at offsets \(a.offsets) and \(b.offsets) overlap")
            }
        } else {
            guard chunks.count <= maximumPairwiseChunks else {
                throw fail("\(chunks.count) chunks split along more than the first dimension; at most \(maximumPairwiseChunks)")
            }
            for (i, c) in chunks.enumerated() {
                for other in chunks[..<i] {
                    let overlaps = (0..<shape.count).allSatisfy { d in
                        c.offsets[d] < other.offsets[d] + other.sizes[d] && other.offsets[d] < c.offsets[d] + c.sizes[d]
                    }
                    if overlaps, c.sizes.allSatisfy({ $0 > 0 }) { throw fail("chunks at offsets \(other.offsets) and \(c.offsets) overlap") }
                }
            }
        }
        guard covered == total else { throw fail("chunks cover \(covered) of \(total) elements (missing chunk)") }
    }
}
