import ArapackFormats
import ArapackModel
import ArapackTensor

/// A form training code reads back (a torch.save checkpoint, a DCP folder): every member of the family in a floating
/// dtype, under the training script's names. Not a release: `verify` and `sign` send it to `inspect` and `convert`.
/// A training form says what it is and writes its file or folder; the rest is shared.
public protocol TrainingForm: OutputForm {
    /// Writes the state dict of `model`, cast to `dtype` (nil: the source's), at `destination`, moved into place only
    /// when complete.
    func writeTraining(_ model: ReleaseModel, dtype: DType?, at destination: String, replacing: Bool) throws
}

extension TrainingForm {
    public var dtypes: [String] { ["f32", "bf16", "f16"] }

    public func check(_ config: ModelConfig, dtype: String?, source: String) throws {
        try checkDtype(dtype, source: source)
    }

    public func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result {
        let dtype = conversion.options.tensorDType
        try check(model.config, dtype: conversion.options.dtype, source: model.info.path)
        try writeTraining(model, dtype: dtype, at: destination, replacing: conversion.force)
        return Conversion.Result(model: model, manifest: nil)
    }
}
