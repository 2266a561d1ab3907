import ArapackFormats
import ArapackModel
import ArapackTensor

/// Writes a model back in training form: a `torch.save` training dict or a DCP folder.
public enum TrainingExport {
    /// The state dict under training names, cast to `dtype` (nil keeps each tensor's), the tied LM head
    /// being the very same tensor as the embedding (so writers store one storage).
    static func stateDict(_ model: ReleaseModel, dtype: DType?) throws -> [(name: String, tensor: Tensor)] {
        var out: [(name: String, tensor: Tensor)] = []
        let caster = TensorCaster()
        for e in ModelFamily.expectedShapes(model.config) {
            if e.name == ModelFamily.lmHead, model.tied, let emb = out.first(where: { $0.name == ModelFamily.embedding }) {
                out.append((e.name, emb.tensor))
                continue
            }
            let t = try model.tensor(e.name)
            out.append((e.name, try dtype.map { try caster.cast(t, to: $0, name: e.name) } ?? t))
        }
        return out
    }

    /// `{"model": state_dict, <training metadata>…}` with `config` in the training script's names
    /// (replacing what the source recorded, so it is complete), at `path`.
    public static func writeTorch(_ model: ReleaseModel, dtype: DType?, to path: String, replacing: Bool) throws {
        var extra = model.trainingMetadata
        if let i = extra.firstIndex(where: { $0.key == "config" }) {
            extra[i].value = model.config.trainingJSON
        } else {
            extra.append(.init("config", model.config.trainingJSON))
        }
        try TorchCheckpointWriter.write(stateDict: try stateDict(model, dtype: dtype), extra: extra, to: path, replacing: replacing)
    }

    /// A single-rank DCP folder `dcp.load` reads into `{"model": state_dict}` (the LM head included).
    public static func writeDCP(_ model: ReleaseModel, dtype: DType?, into directory: String) throws {
        try DCPWriter.write(stateDict: try stateDict(model, dtype: dtype), into: directory)
    }
}
