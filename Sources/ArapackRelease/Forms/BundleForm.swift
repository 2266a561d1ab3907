import ArapackFormats
import ArapackModel
#if canImport(Glibc)
import Glibc
#endif

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
    /// config.json, fields in a fixed order; `extra` (the int8 or int4 quantization config) goes last.
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

    public var destinationKind: DestinationGuard.Kind { .bundleFolder }

    public func check(_ model: ReleaseModel, for conversion: Conversion) throws {
        try BundleWriter.check(model, options: bundleOptions(conversion.options))
    }

    /// The bundle's options: the conversion's, in this form.
    func bundleOptions(_ options: OutputOptions) -> BundleOptions {
        BundleOptions(dtype: options.tensorDType, maxShardSize: options.maxShardSize, sourceDigest: options.sourceDigest,
                      quantization: options.quantization, keep: options.keep, form: self, card: options.card)
    }

    /// Written into a temporary sibling, checked by parity and signed there; the archive (and its sidecar) is on disk
    /// before the folder moves into place.
    public func write(_ model: ReleaseModel, for conversion: Conversion, at destination: String, progress: Progress) throws -> Conversion.Result {
        let options = bundleOptions(conversion.options)
        let releaseName = options.card.releaseName(model.config)
        let folder = try AtomicDirectory(destination: destination)
        var report: ParityReport?
        let manifest = try BundleWriter.write(model, tokenizer: model.tokenizer, options: options, into: folder.temporaryPath,
                                              progress: progress, parity: conversion.parity.map { request in { directory in
            progress.begin("parity", total: 0)
            var run = try request.run(bundle: try ReleaseModel(path: directory), source: model)
            progress.end()
            run.bundle = conversion.destination
            report = run
            guard run.passed else { throw ConversionError.parityFailed(run) }
            return run.summary
        } })
        if let signing = conversion.signing {
            let provenance = Provenance(manifest: manifest, manifestSHA256: manifest.sha256, options: signing.options, parity: manifest.parity)
            try ModelSignature.sign(folder: folder.temporaryPath, name: releaseName, key: signing.key,
                                    signaturePath: folder.path(ModelSignature.defaultFileName), provenance: provenance)
        }
        if conversion.archive {
            let epoch = getenv("SOURCE_DATE_EPOCH").flatMap { Int(String(cString: $0)) } ?? 0
            try ReleaseArchive.write(folder: folder.temporaryPath, files: try BundleFolder.files(folder.temporaryPath), name: releaseName,
                                     to: try NamedOutput.resolvingSymbolicLinks(conversion.archivePath), mtime: epoch,
                                     replacing: conversion.force, progress: progress) {
                try folder.commit(replacing: conversion.force)
            }
        } else {
            try folder.commit(replacing: conversion.force)
        }
        var warnings: [String] = []
        if model.tokenizer == nil {
            warnings.append("\(conversion.destination): the release carries no tokenizer (pass --tokenizer DIR): AutoTokenizer cannot load it, and its card says so")
        }
        return Conversion.Result(model: model, manifest: manifest, parity: report, warnings: warnings)
    }

    public func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport {
        try BundleVerifier.verify(path: path, signature: signature, progress: progress)
    }
}
