import ArapackFormats
import ArapackModel
import ArapackTensor

/// Something `convert` writes: a release form (`ReleaseForm`: native bundle, GPT-2 bundle, GGUF) or a training form
/// (torch.save checkpoint, DCP folder). Each is one type in its own folder under Forms/ that says what it stores,
/// refuses what it cannot hold, writes itself at DST and is recognised when read back; `ReleaseForms.all` lists them.
public protocol OutputForm: Sendable {
    /// The name `convert --to` takes, the signed provenance records and errors carry.
    var name: String { get }
    /// What the form is, in error messages ("GPT-2 form").
    var title: String { get }
    /// What it holds and who loads it, for `convert --help`.
    var summary: String { get }
    /// The `--dtype` values the form stores (`f32`, `bf16`, `f16`, `int8`, `int4`, `q8_0`, …).
    var dtypes: [String] { get }
    /// Why the form does not store `dtype` (a `--dtype` name it does not list), for the error that refuses it.
    func dtypeAdvice(_ dtype: String) -> String
    /// The usage error of `convert --to NAME --dtype dtype` when the form does not store `dtype`.
    func dtypeRefusal(_ dtype: String) -> String
    /// What a `--dtype` only this form writes means when given to another target (`int8`, `int4` → bundles only).
    var dtypeNotes: [String: String] { get }
    /// Refuses a model this form cannot compute (`ReleaseFormError`): the form's own rules; `dtype` is the weights'
    /// `--dtype` name (nil: the source's).
    func check(_ config: ModelConfig, dtype: String?, source: String) throws
    /// Whether an output of this form can be at `format` (what `SourceDetection` found there).
    func isWritten(as format: SourceFormat) -> Bool
    /// What `--force` may replace at DST for this form (`DestinationGuard`).
    var destinationKind: DestinationGuard.Kind { get }
    /// Refuses what `write` would refuse of `model` written as `conversion` asks, before anything is written and
    /// without reading tensor data (a release checks every artifact so before writing the first).
    func check(_ model: ReleaseModel, for conversion: Conversion) throws
    /// Writes `model` at `destination` (DST with its links resolved) as `conversion` asks, and moves it into place
    /// only once it is complete (and checked and signed, when asked).
    func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result
}

/// What `convert` asks of the output beyond its form: the dtype and the options of the forms that take them (each
/// form reads the ones it has; the CLI refuses the others).
public struct OutputOptions: Sendable {
    /// `--dtype`, by its name in the forms' `dtypes` (nil keeps the source's).
    public var dtype: String?
    /// Bundles: shard model.safetensors past this many bytes of tensor data; nil never shards.
    public var maxShardSize: Int?
    /// Bundles: whether to record the SHA-256 of the source in the manifest (null otherwise).
    public var sourceDigest = true
    /// Bundles with dtype int8 or int4: the group size (0 per channel; nil: the scheme's default, int4's 128), and glob
    /// patterns of (release) names kept in float32.
    public var groupSize: Int?
    public var keep: [String] = []
    /// Bundles: the model card's name, license, base model, or the user's own card.
    public var card = ModelCard.Options()
    /// GGUF: write the file although llama.cpp would tokenize differently from the tokenizer (recorded in the file).
    public var allowTokenizerMismatch = false

    public init(dtype: String? = nil) { self.dtype = dtype }

    /// The floating dtype `dtype` names, nil for the source's, a quantization (int8, int4) or a block format (q8_0).
    public var tensorDType: DType? { dtype.flatMap { ReleaseForms.tensorDTypes[$0] } }

    /// The quantization of the linear weights `dtype` names (int8, int4), nil for the others.
    public var quantization: LinearQuantization? {
        dtype.flatMap(LinearQuantization.Scheme.init(rawValue:)).map {
            LinearQuantization($0, groupSize: groupSize ?? ($0 == .int4 ? LinearQuantization.int4GroupSize : 0))
        }
    }
}

extension OutputForm {
    /// By default, the form's rules for the model's config and the dtype asked.
    public func check(_ model: ReleaseModel, for conversion: Conversion) throws {
        try check(model.config, dtype: conversion.options.dtype, source: model.info.path)
    }

    /// What the form stores, and which forms write `dtype`.
    public func dtypeAdvice(_ dtype: String) -> String {
        let writers = ReleaseForms.all.filter { $0.dtypes.contains(dtype) }.map { "--to " + $0.name }
        return "it stores " + dtypes.joined(separator: ", ") + (writers.isEmpty ? "" : "; \(dtype) is written by " + writers.joined(separator: " or "))
    }

    /// The usage error, by default: the note of the form that owns `dtype`, else the form and what it stores.
    public func dtypeRefusal(_ dtype: String) -> String { standardDtypeRefusal(dtype) }

    public func standardDtypeRefusal(_ dtype: String) -> String {
        ReleaseForms.note(for: dtype) ?? "--dtype \(dtype) is not written in the \(title): \(dtypeAdvice(dtype))"
    }

    public var dtypeNotes: [String: String] { [:] }

    /// Refuses weights in a dtype the form does not store (nil: the source's, always accepted).
    func checkDtype(_ dtype: String?, source: String) throws {
        guard let dtype, !dtypes.contains(dtype) else { return }
        throw ReleaseFormError(self, source: source, refusal: .dtype(dtype), reason: dtypeAdvice(dtype))
    }
}

/// Every output form, and the lookups over them.
public enum ReleaseForms {
    /// The forms, in the order `convert --to` lists them (its values, help and dispatch come from here). Adding a
    /// form: its folder under Forms/, and a line here.
    public static let all: [any OutputForm] = [NativeBundle(), GPT2Bundle(), GGUFRelease(), TorchCheckpointForm(), DCPForm()]

    /// The form `convert --to` names.
    public static func named(_ name: String) -> (any OutputForm)? { all.first { $0.name == name } }

    /// The release forms (what `verify` and `sign` take).
    public static var releases: [any ReleaseForm] { all.compactMap { $0 as? any ReleaseForm } }

    /// The bundle forms (folders with config.json).
    public static var bundles: [any BundleForm] { all.compactMap { $0 as? any BundleForm } }

    /// Every `--dtype` some form stores, in the order the forms list them.
    public static var dtypeNames: [String] {
        all.flatMap(\.dtypes).reduce(into: []) { names, d in if !names.contains(d) { names.append(d) } }
    }

    /// The tensor dtypes `--dtype` names (the block formats, such as q8_0, are GGUF's own and not here).
    static let tensorDTypes: [String: DType] = ["f32": .f32, "bf16": .bf16, "f16": .f16]

    /// The bundle form whose config.json carries `modelType`.
    public static func bundleForm(modelType: String) -> (any BundleForm)? { bundles.first { $0.modelTypes.contains(modelType) } }

    /// The form a written release at `path` is read back as: by its bytes (a GGUF file), else a bundle (its
    /// config.json then says which bundle form).
    /// Throws `NotARelease` for a training checkpoint or a bare safetensors file (what `verify` and `sign` were
    /// pointed at by mistake); a folder without a manifest is read as a bundle, whose checks then say what is missing.
    public static func reading(_ path: String) throws -> any ReleaseForm {
        let format = try SourceDetection.detect(path).format
        let isFolder = (try? FileKind(atPath: NamedOutput.resolvingSymbolicLinks(path))) == .directory
        switch format {
        case .torchZip, .torchLegacy: throw NotARelease(path: path, format: format)
        case .safetensors where !isFolder, .safetensorsSharded where !isFolder: throw NotARelease(path: path, format: format)
        case .dcp where !pathExists(path + "/" + Manifest.fileName): throw NotARelease(path: path, format: format)
        default:
            if isFolder, let modelType = try? readJSON(path + "/config.json")["model_type"]?.stringValue,
               let form = bundleForm(modelType: modelType) {
                return form
            }
            return releases.first { $0.isWritten(as: format) } ?? NativeBundle()
        }
    }

    /// The note of the form that owns `dtype` (`NativeBundle`'s for int8 and int4, `GGUFRelease`'s for q8_0), if one has.
    public static func note(for dtype: String) -> String? { all.lazy.compactMap { $0.dtypeNotes[dtype] }.first }
}
