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
        func dataclass(_ module: String, _ name: String, state: () -> Void) {
            p.global(module, name)
            p.emptyTuple()
            p.newObject()
            state()
            p.build()
        }
        func size(_ dims: [Int]) {
            p.global("torch", "Size")
            p.mark()
            p.mark()
            for d in dims { p.int(d) }
            p.tuple()
            p.tuple()
            p.reduce()
        }
        func fields(_ body: () -> Void) {
            p.emptyDict()
            p.mark()
            body()
            p.setItems()
        }
        dataclass(metadataModule, "Metadata") {
            fields {
                p.string("state_dict_metadata")
                fields {
                    for (name, t) in stateDict {
                        p.string("model." + name)
                        dataclass(metadataModule, "TensorStorageMetadata") {
                            fields {
                                p.string("properties")
                                dataclass(metadataModule, "TensorProperties") {
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
                                size(t.shape)
                                p.string("chunks")
                                p.emptyList()
                                p.mark()
                                dataclass(metadataModule, "ChunkStorageMetadata") {
                                    fields {
                                        p.string("offsets")
                                        size(t.shape.map { _ in 0 })
                                        p.string("sizes")
                                        size(t.shape)
                                    }
                                }
                                p.appends()
                            }
                        }
                    }
                }
                p.string("planner_data")
                p.none()
                p.string("storage_data")
                fields {
                    for (i, (name, t)) in stateDict.enumerated() {
                        dataclass(metadataModule, "MetadataIndex") {
                            fields {
                                p.string("fqn")
                                p.string("model." + name)
                                p.string("offset")
                                size(t.shape.map { _ in 0 })
                                p.string("index")
                                p.int(0)
                            }
                        }
                        dataclass("torch.distributed.checkpoint.filesystem", "_StorageInfo") {
                            fields {
                                p.string("relative_path")
                                p.string(dataFile)
                                p.string("offset")
                                p.int(ranges[i].lowerBound)
                                p.string("length")
                                p.int(ranges[i].count)
                            }
                        }
                    }
                }
                p.string("storage_meta")
                p.none()
                p.string("version")
                p.string("1.0.0")
            }
        }
        return p.finish()
    }
}
