import ArapackFormats
import ArapackModel
import ArapackTensor

/// A training checkpoint as `torch.save` writes it (docs/formats.md): `{"model": state_dict, "config": {...}, ...}`
/// under the training script's names, the tied pair sharing one storage, written by `TrainingExport.writeTorch` and
/// read back by `TorchCheckpoint`. Not a release: `verify` and `sign` send it to `inspect` and `convert`.
public struct TorchCheckpointForm: OutputForm {
    public init() {}
    public var name: String { "torch" }
    public var title: String { "torch.save checkpoint" }
    public var summary: String { "a training checkpoint, torch.save" }
    public var dtypes: [String] { ["f32", "bf16", "f16"] }
    public var destinationKind: DestinationGuard.Kind { .torchFile }

    public func check(_ config: ModelConfig, dtype: DType?, source: String) throws {
        try checkDtype(dtype, source: source)
    }

    public func isWritten(as format: SourceFormat) -> Bool { format == .torchZip }

    public func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result {
        let dtype = conversion.options.tensorDType
        try check(model.config, dtype: dtype, source: model.info.path)
        try TrainingExport.writeTorch(model, dtype: dtype, to: destination, replacing: conversion.force)
        return Conversion.Result(model: model, manifest: nil)
    }
}
