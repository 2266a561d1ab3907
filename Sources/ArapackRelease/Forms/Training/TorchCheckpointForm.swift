import ArapackFormats
import ArapackTensor

/// A training checkpoint as `torch.save` writes it (docs/formats.md): `{"model": state_dict, "config": {...}, ...}`
/// under the training script's names, the tied pair sharing one storage, written by `TrainingExport.writeTorch` and
/// read back by `TorchCheckpoint`.
public struct TorchCheckpointForm: TrainingForm {
    public init() {}
    public var name: String { "torch" }
    public var title: String { "torch.save checkpoint" }
    public var summary: String { "a training checkpoint, torch.save" }
    public var destinationKind: DestinationGuard.Kind { .torchFile }
    public func isWritten(as format: SourceFormat) -> Bool { format == .torchZip }

    public func writeTraining(_ model: ReleaseModel, dtype: DType?, at destination: String, replacing: Bool) throws {
        try TrainingExport.writeTorch(model, dtype: dtype, to: destination, replacing: replacing)
    }
}
