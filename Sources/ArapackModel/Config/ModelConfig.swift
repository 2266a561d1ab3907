import ArapackFormats

/// The model's hyper-parameters (docs/model-family.md, "Config"). `Codable` in config.json's (HF) names: `CodingKeys`
/// spells each of them once, and is the field every other dialect (`ConfigDialect`: the training dict, GPT2Config, GGUF
/// metadata) maps its own names to. `ConfigAssembly` builds one from every place that states a field, validated.
public struct ModelConfig: Codable, Equatable, Sendable {
    // Declared in config.json's order: the synthesized encoding writes them so.
    public var vocabSize: Int
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var maxPositions: Int
    public var activation: String
    public var layerNormEps: Double
    public var dropout: Double
    public var causal: Bool
    public var tieWordEmbeddings: Bool
    public var bos: Int, eos: Int, pad: Int, mask: Int

    /// config.json's names of the fields: the family's own, then the common tail every config.json form ends with.
    public enum CodingKeys: String, CodingKey, CaseIterable, Sendable {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", layers = "num_hidden_layers", heads = "num_attention_heads"
        case intermediateSize = "intermediate_size", maxPositions = "max_position_embeddings", activation = "hidden_act"
        case layerNormEps = "layer_norm_eps", dropout, causal = "is_causal"
        case tieWordEmbeddings = "tie_word_embeddings", bos = "bos_token_id", eos = "eos_token_id", pad = "pad_token_id", mask = "mask_token_id"
    }
    /// A field of the model's config, by its config.json name.
    public typealias Field = CodingKeys

    /// The key after the fields in every config.json form: the weights' dtype.
    public static let torchDtypeKey = "torch_dtype"

    public init(vocabSize: Int, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, maxPositions: Int, activation: String,
                layerNormEps: Double, dropout: Double, causal: Bool, tieWordEmbeddings: Bool, bos: Int, eos: Int, pad: Int, mask: Int) {
        (self.vocabSize, self.hiddenSize, self.layers, self.heads) = (vocabSize, hiddenSize, layers, heads)
        (self.intermediateSize, self.maxPositions, self.activation) = (intermediateSize, maxPositions, activation)
        (self.layerNormEps, self.dropout, self.causal, self.tieWordEmbeddings) = (layerNormEps, dropout, causal, tieWordEmbeddings)
        (self.bos, self.eos, self.pad, self.mask) = (bos, eos, pad, mask)
    }

    /// The fields as config.json states them, in order.
    public var members: [JSONValue.Member] { (try! JSONValueEncoder().encode(self)).members! }

    /// The value of one field, as config.json states it.
    public func value(of field: Field) -> JSONValue { members.first { $0.key == field.stringValue }!.value }

    /// config.json's `model_type` of each member of the family (causal, bidirectional).
    public static let causalModelType = "arafusion_ar", bidirectionalModelType = "arafusion_mdlm"
    public var modelType: String { causal ? Self.causalModelType : Self.bidirectionalModelType }
    public var architecture: String { causal ? "ARAr381MForCausalLM" : "MDLMForMaskedDiffusion" }

    /// The name a release of this model goes by when no Hub repository is named: the family and the size,
    /// e.g. `AraFusion-AR-381M` (`AraFusion-MDLM-…` for the bidirectional twin).
    public var defaultReleaseName: String {
        let n = parameterCount
        let size = n >= 1_000_000_000 ? "\((n + 50_000_000) / 100_000_000 / 10).\((n + 50_000_000) / 100_000_000 % 10)B"
            : n >= 1_000_000 ? "\((n + 500_000) / 1_000_000)M" : n >= 1_000 ? "\((n + 500) / 1_000)K" : "\(n)"
        return "AraFusion-\(causal ? "AR" : "MDLM")-\(size)"
    }

    /// The fields no logit depends on: training-only settings (dropout) and the special token ids.
    static let nonFunctionFields: Set<Field> = [.dropout, .bos, .eos, .pad, .mask]

    /// What differs between the functions the two configs compute, one `name: this vs other` phrase each: the
    /// sizes, the activation, the LayerNorm eps, the causality and the tie; never training-only settings (dropout)
    /// or the special token ids, which no logit depends on. Empty: the same function.
    public func functionDifferences(from other: ModelConfig) -> [String] {
        zip(members, other.members).filter { Field(stringValue: $0.0.key).map { !Self.nonFunctionFields.contains($0) } ?? false }
            .filter { $0.0.value != $0.1.value }
            .map { "\($0.0.key) \(Self.plain($0.0.value)) vs \(Self.plain($0.1.value))" }
    }

    /// A value as the differences show it: as Swift prints the field (strings unquoted, `1e-05`).
    private static func plain(_ v: JSONValue) -> String {
        if let s = v.stringValue { return s }
        if case .bool(let b) = v { return "\(b)" }
        if let i = v.intValue { return "\(i)" }
        return v.doubleValue.map { "\($0)" } ?? v.serialized()
    }

    /// Parameters with the tied matrix counted once (twice when untied).
    public var parameterCount: Int {
        ModelFamily.expectedShapes(self).filter { $0.name != ModelFamily.lmHead || !tieWordEmbeddings }
            .reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// config.json, fields in a fixed order. `dtype` is `torch_dtype` (`float32`, `bfloat16`, …).
    public func hfJSON(torchDtype: String, extra: [JSONValue.Member] = []) -> JSONValue {
        .object([
            .init("architectures", .array([.string(architecture)])),
            .init("model_type", .string(modelType)),
            .init("auto_map", autoMap),
        ] + members + [.init(Self.torchDtypeKey, .string(torchDtype))] + extra)
    }

    /// The Python modules of the transformers wrapper (ArapackRelease/Wrapper) that `auto_map` names.
    public static let configurationModule = "configuration_arafusion", modelingModule = "modeling_arafusion"

    /// config.json's `auto_map`: the config class and the model classes of the family member, as `module.Class`.
    public var autoMap: JSONValue {
        let config = Self.configurationModule + "." + (causal ? "AraFusionARConfig" : "AraFusionMDLMConfig")
        let model = Self.modelingModule + "." + architecture
        let classes = causal ? [("AutoModelForCausalLM", model)] : [("AutoModel", model), ("AutoModelForMaskedLM", model)]
        return .object([.init("AutoConfig", .string(config))] + classes.map { .init($0.0, .string($0.1)) })
    }

    /// A config of the smallest sizes (tests, error messages).
    public static let placeholder = ModelConfig(vocabSize: 1, hiddenSize: 1, layers: 1, heads: 1, intermediateSize: 1, maxPositions: 1,
                                                activation: "gelu", layerNormEps: 1e-5, dropout: 0, causal: true, tieWordEmbeddings: true,
                                                bos: 0, eos: 0, pad: 0, mask: 0)

    /// The training script's `config` dict (docs/model-family.md), as `--to torch` stores it.
    public var trainingJSON: JSONValue { TrainingConfig(self).json }
}
