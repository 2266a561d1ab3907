import ArapackFormats
import ArapackModel
import ArapackTensor

/// A single-rank torch.distributed.checkpoint folder (docs/formats.md) that `dcp.load` reads into
/// `{"model": state_dict}`, written by `TrainingExport.writeDCP` and read back by `DCPCheckpoint`. Not a release:
/// `verify` and `sign` send it to `inspect` and `convert`.
public struct DCPForm: OutputForm {
    public init() {}
    public var name: String { "dcp" }
    public var title: String { "DCP folder" }
    public var summary: String { "a single-rank torch.distributed.checkpoint folder" }
    public var dtypes: [String] { ["f32", "bf16", "f16"] }
    public var destinationKind: DestinationGuard.Kind { .dcpFolder }

    public func check(_ config: ModelConfig, dtype: DType?, source: String) throws {
        try checkDtype(dtype, source: source)
    }

    public func isWritten(as format: SourceFormat) -> Bool { format == .dcp }

    public func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result {
        let dtype = conversion.options.tensorDType
        try check(model.config, dtype: dtype, source: model.info.path)
        let folder = try AtomicDirectory(destination: destination)
        try TrainingExport.writeDCP(model, dtype: dtype, into: folder.temporaryPath)
        try folder.commit(replacing: conversion.force)
        return Conversion.Result(model: model, manifest: nil)
    }
}
