import ArapackTensor

/// Writes a single-rank torch.distributed.checkpoint directory that `torch.distributed.checkpoint.load`
/// reads into `{"model": state_dict}`: `__0_0.distcp` holds one `torch.save` archive per tensor, one after
/// the other, and `.metadata` pickles the DCP dataclasses describing them (one chunk per tensor).
/// Tensors sharing storage are written once each, as `dcp.save` does.
public enum DCPWriter {
    static let dataFile = "__0_0.distcp"
    static let metadataModule = "torch.distributed.checkpoint.metadata"

    /// Writes `stateDict` (names without the `model.` prefix) into the existing, empty folder `directory`.
    public static func write(stateDict: [(name: String, tensor: Tensor)], into directory: String) throws {
        var ranges: [Range<Int>] = []
        let data = try AtomicFileWriter(destination: directory + "/" + dataFile)
        for (name, t) in stateDict {
            guard TorchGlobals.dtypeName[t.dtype] != nil else {
                throw TorchError.badTensor(file: data.destination, tensor: name, detail: "dtype \(t.dtype) cannot be written to a DCP checkpoint")
            }
            let start = data.bytesWritten
            try TorchCheckpointWriter.writeTensorArchive(t, name: name, into: data)
            ranges.append(start..<data.bytesWritten)
        }
        let meta = try AtomicFileWriter(destination: directory + "/.metadata")
        try meta.write(metadataPickle(stateDict, ranges: ranges))
        try data.commit()
        try meta.commit()
    }

    /// `Metadata(state_dict_metadata, planner_data=None, storage_data, storage_meta=None, version)`.
    static func metadataPickle(_ stateDict: [(name: String, tensor: Tensor)], ranges: [Range<Int>]) -> [UInt8] {
        var p = PickleWriter()
        p.dataclass(metadataModule, "Metadata") { p in
            p.fields { p in
                p.string("state_dict_metadata")
                p.fields { p in
                    for (name, t) in stateDict {
                        p.string("model." + name)
                        tensorStorageMetadata(t, into: &p)
                    }
                }
                p.string("planner_data")
                p.none()
                p.string("storage_data")
                p.fields { p in
                    for (i, (name, t)) in stateDict.enumerated() { storageData("model." + name, t, range: ranges[i], into: &p) }
                }
                p.string("storage_meta")
                p.none()
                p.string("version")
                p.string("1.0.0")
            }
        }
        return p.finish()
    }

    /// `TensorStorageMetadata(properties, size, chunks=[ChunkStorageMetadata(offsets=0…, sizes=size)])`.
    static func tensorStorageMetadata(_ t: Tensor, into p: inout PickleWriter) {
        p.dataclass(metadataModule, "TensorStorageMetadata") { p in
            p.fields { p in
                p.string("properties")
                p.dataclass(metadataModule, "TensorProperties") { p in
                    // __getstate__ tuple: (dtype, layout, requires_grad, memory format encoding, pin_memory).
                    p.mark()
                    p.global("torch", TorchGlobals.dtypeName[t.dtype]!)
                    p.global("torch.serialization", "_get_layout")
                    p.mark()
                    p.string("torch.strided")
                    p.tuple()
                    p.reduce()
                    p.bool(false)
                    p.global(metadataModule, "_MEM_FORMAT_ENCODING")
                    p.mark()
                    p.int(0)
                    p.tuple()
                    p.reduce()
                    p.bool(false)
                    p.tuple()
                }
                p.string("size")
                p.torchSize(t.shape)
                p.string("chunks")
                p.emptyList()
                p.mark()
                p.dataclass(metadataModule, "ChunkStorageMetadata") { p in
                    p.fields { p in
                        p.string("offsets")
                        p.torchSize(t.shape.map { _ in 0 })
                        p.string("sizes")
                        p.torchSize(t.shape)
                    }
                }
                p.appends()
            }
        }
    }

    /// One `storage_data` item: `MetadataIndex(fqn, offset=0…, index=0)` → `_StorageInfo(relative_path, offset, length)`.
    static func storageData(_ fqn: String, _ t: Tensor, range: Range<Int>, into p: inout PickleWriter) {
        p.dataclass(metadataModule, "MetadataIndex") { p in
            p.fields { p in
                p.string("fqn")
                p.string(fqn)
                p.string("offset")
                p.torchSize(t.shape.map { _ in 0 })
                p.string("index")
                p.int(0)
            }
        }
        p.dataclass("torch.distributed.checkpoint.filesystem", "_StorageInfo") { p in
            p.fields { p in
                p.string("relative_path")
                p.string(dataFile)
                p.string("offset")
                p.int(range.lowerBound)
                p.string("length")
                p.int(range.count)
            }
        }
    }
}

/// The shapes DCP's metadata is built from.
extension PickleWriter {
    /// A dataclass instance: `module.name.__new__()` with its state set by `state`.
    mutating func dataclass(_ module: String, _ name: String, state: (inout PickleWriter) -> Void) {
        global(module, name)
        emptyTuple()
        newObject()
        state(&self)
        build()
    }

    /// `torch.Size((dims…))`.
    mutating func torchSize(_ dims: [Int]) {
        global("torch", "Size")
        mark()
        mark()
        for d in dims { int(d) }
        tuple()
        tuple()
        reduce()
    }

    /// A dict whose items `body` writes (key, value, …).
    mutating func fields(_ body: (inout PickleWriter) -> Void) {
        emptyDict()
        mark()
        body(&self)
        setItems()
    }
}

