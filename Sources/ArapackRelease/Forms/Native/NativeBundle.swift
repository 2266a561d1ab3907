import ArapackFormats
import ArapackModel
import ArapackTensor

/// The native bundle: the family's own config.json and tensor names (`model.` + the training name), the
/// transformers wrapper beside them (`trust_remote_code=True`). It holds every member of the family in every dtype.
public struct NativeBundle: BundleForm {
    public init() {}
    public var name: String { "bundle" }
    public var title: String { "native bundle" }
    public var summary: String { "a release bundle that transformers loads with its wrapper, trust_remote_code=True" }
    public var layout: NamingLayout { .release }
    public var dtypes: [String] { ["f32", "bf16", "f16"] + LinearQuantization.Scheme.allCases.map(\.rawValue) }

    public func check(_ config: ModelConfig, dtype: String?, source: String) throws {
        try checkDtype(dtype, source: source)
    }

    /// int8 and int4 are the native bundle's (compressed-tensors) alone.
    public var dtypeNotes: [String: String] {
        Dictionary(uniqueKeysWithValues: LinearQuantization.Scheme.allCases.map(\.rawValue).map { dtype in
            (dtype, "--dtype \(dtype) writes bundles only; " + ReleaseForms.all.filter { !$0.dtypes.contains(dtype) }
                .map { "--to \($0.name) takes " + $0.dtypes.joined(separator: ", ") }.joined(separator: "; "))
        })
    }

    public var modelTypes: [String] { [ModelConfig.causalModelType, ModelConfig.bidirectionalModelType] }
    public func modelType(_ config: ModelConfig) -> String { config.modelType }
    public func architecture(_ config: ModelConfig) -> String { config.architecture }

    public func configJSON(_ config: ModelConfig, torchDtype: String, extra: [JSONValue.Member]) -> JSONValue {
        config.hfJSON(torchDtype: torchDtype, extra: extra)
    }

    /// The family's fields (`dropout` defaults to 0) and the common tail.
    public var requiredConfigFields: [String] {
        ModelConfig.Field.allCases.filter { $0 != .dropout }.map(\.stringValue) + [ModelConfig.torchDtypeKey]
    }

    public var foreignNames: String { "without the \(ModelFamily.releasePrefix) prefix" }

    public var extraFiles: [(name: String, bytes: [UInt8])] { ModelWrapper.files }

    /// The wrapper: auto_map names its classes, and its files are the ones this arapack writes.
    public func extraChecks(config: JSONValue?, resolved: ModelConfig?, read: (String) -> [UInt8]?) -> [(name: String, problems: [String])] {
        guard let config, let resolved else { return [("wrapper", ["not checked: config.json is unusable"])] }
        return [("wrapper", ModelWrapper.problems(config: config, expected: resolved, read: read))]
    }

    public var cardTags: [String] { ["custom_code"] }
    public var cardLoading: String {
        ". The model's code is in this repository (`\(ModelWrapper.modelingFile)`, `\(ModelWrapper.configurationFile)`): "
            + "load it with `trust_remote_code=True`; it imports only torch and transformers."
    }
    public var loadArguments: String { ", trust_remote_code=True" }
    public var positionsExpression: String { "model.config.max_position_embeddings" }
    public var hasTrainingSampler: Bool { true }
}
