import ArapackFormats
import ArapackModel

/// A release form that is a folder (docs/bundle.md): the weights in safetensors, config.json, the tokenizer, a model card
/// and manifest.json, written by `BundleWriter` and read back by `BundleVerifier`. What differs between bundle forms
/// comes in three concerns, each its own protocol: the config dialect, the card's words, and what the form adds
/// (files and checks; none by default).
public protocol BundleForm: ReleaseForm, BundleConfigDialect, BundleCardWording, BundleAdditions {
    /// How the form's tensor names are described when a bundle holds others ("tensor names \(…): a, b").
    var foreignNames: String { get }
}

/// How a bundle form writes and reads its config.json.
public protocol BundleConfigDialect {
    /// config.json's `model_type` values of the form (read back: a bundle's config.json says which form it is in).
    var modelTypes: [String] { get }
    /// config.json's `model_type` for `config`.
    func modelType(_ config: ModelConfig) -> String
    /// The class transformers instantiates.
    func architecture(_ config: ModelConfig) -> String
    /// config.json, fields in a fixed order; `extra` (the int8 quantization config) goes last.
    func configJSON(_ config: ModelConfig, torchDtype: String, extra: [JSONValue.Member]) -> JSONValue
    /// Fields a bundle's config.json must state (the ones the form writes that no default stands in for).
    var requiredConfigFields: [String] { get }
    /// What is wrong with a read-back config.json beyond the fields the family reads (the form's fixed values; none
    /// by default).
    func configProblems(_ config: JSONValue) -> [String]
}

/// The model card's words for a bundle form.
public protocol BundleCardWording {
    /// The model card's front matter tags of the form.
    var cardTags: [String] { get }
    /// The card's sentence on how the release loads (after "released by arapack X").
    var cardLoading: String { get }
    /// What `from_pretrained` takes besides the repository (`, trust_remote_code=True`; nothing by default).
    var loadArguments: String { get }
    /// The model's position count as Python reads it from the loaded config.
    var positionsExpression: String { get }
    /// Whether the loaded model carries the training code's own sampler (`model.model.generate`; no by default).
    var hasTrainingSampler: Bool { get }
}

/// What a bundle form adds to every bundle and to `verify` (nothing by default).
public protocol BundleAdditions {
    /// Files the form adds to every bundle, byte for byte, in the order they are written.
    var extraFiles: [(name: String, bytes: [UInt8])] { get }
    /// The checks `verify` runs for this form after the common ones: a name and the problems found, given the
    /// bundle's config.json, the config it resolved to, and a reader of the bundle's small files.
    func extraChecks(config: JSONValue?, resolved: ModelConfig?, read: (String) -> [UInt8]?) -> [(name: String, problems: [String])]
}

extension BundleConfigDialect {
    public func configProblems(_ config: JSONValue) -> [String] { [] }
}

extension BundleCardWording {
    public var loadArguments: String { "" }
    public var hasTrainingSampler: Bool { false }
}

extension BundleAdditions {
    public var extraFiles: [(name: String, bytes: [UInt8])] { [] }
    public func extraChecks(config: JSONValue?, resolved: ModelConfig?, read: (String) -> [UInt8]?) -> [(name: String, problems: [String])] { [] }
}

extension BundleForm {
    public func isWritten(as format: SourceFormat) -> Bool { format != .gguf }

    public func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport {
        try BundleVerifier.verify(path: path, signature: signature, progress: progress)
    }
}
