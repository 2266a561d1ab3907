import ArapackFormats

/// The names one dialect gives the model's config fields (docs/model-family.md, "Config"): its `CodingKeys`, each name
/// spelled once, each naming the `ModelConfig` field it states (several may state one: GPT2Config's n_positions and
/// n_ctx). The dialects: config.json (`ModelConfig.CodingKeys`), the training script's dict (`TrainingConfigKey`),
/// transformers' GPT2Config (`GPT2ConfigKey`) and llama.cpp's GGUF metadata (`GGUFConfigKey`).
public protocol ConfigDialect: CodingKey, CaseIterable, Hashable, Sendable where AllCases == [Self] {
    /// The field this name states.
    var field: ModelConfig.Field { get }
}

extension ModelConfig.CodingKeys: ConfigDialect {
    public var field: ModelConfig.Field { self }
}

/// A config in one dialect: the values it states under the dialect's names, in the order they come. `Codable` over the
/// dialect's keys: decoding keeps the names the dialect has (in the document's order) and leaves every other out;
/// encoding writes them in the order held.
public struct DialectConfig<Key: ConfigDialect>: Codable, Sendable {
    public var values: [(key: Key, value: JSONValue)]

    /// The dialect's statement of `config`: every name, in the dialect's order.
    public init(_ config: ModelConfig) {
        let members = config.members
        values = Key.allCases.map { key in (key, members.first { $0.key == key.field.stringValue }!.value) }
    }

    /// Decodes the dialect's names from a config object (nil: not an object).
    public init?(_ json: JSONValue) {
        guard json.members != nil, let decoded = try? JSONValueDecoder().decode(Self.self, from: json) else { return nil }
        self = decoded
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        values = try c.allKeys.map { ($0, try c.decode(JSONValue.self, forKey: $0)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (key, value) in values { try c.encode(value, forKey: key) }
    }

    /// The values as members of a JSON object, in order.
    public var members: [JSONValue.Member] { values.map { .init($0.key.stringValue, $0.value) } }
    public var json: JSONValue { .object(members) }
}

/// The training script's `config` dict (docs/model-family.md): what checkpoints carry and `--to torch` writes.
public enum TrainingConfigKey: String, ConfigDialect {
    case vocabSize = "vocab_size", dModel = "d_model", nLayers = "n_layers", nHeads = "n_heads", dFF = "d_ff", maxSeqLen = "max_seq_len"
    case dropout, activation, causal, layerNormEps = "layer_norm_eps"

    public var field: ModelConfig.Field {
        switch self {
        case .vocabSize: return .vocabSize
        case .dModel: return .hiddenSize
        case .nLayers: return .layers
        case .nHeads: return .heads
        case .dFF: return .intermediateSize
        case .maxSeqLen: return .maxPositions
        case .dropout: return .dropout
        case .activation: return .activation
        case .causal: return .causal
        case .layerNormEps: return .layerNormEps
        }
    }
}
public typealias TrainingConfig = DialectConfig<TrainingConfigKey>

/// transformers' GPT2Config as the GPT-2 form writes it (docs/model-family.md, "The GPT-2 form"): the model's own
/// fields, the older `n_ctx`, then the common tail (config.json's names).
public enum GPT2ConfigKey: String, ConfigDialect {
    case vocabSize = "vocab_size", nEmbd = "n_embd", nLayer = "n_layer", nHead = "n_head", nInner = "n_inner", nPositions = "n_positions"
    case activationFunction = "activation_function", layerNormEpsilon = "layer_norm_epsilon", nCtx = "n_ctx"
    case tieWordEmbeddings = "tie_word_embeddings", bos = "bos_token_id", eos = "eos_token_id", pad = "pad_token_id", mask = "mask_token_id"

    /// config.json's `model_type` of a GPT2Config.
    public static let modelType = "gpt2"

    public var field: ModelConfig.Field {
        switch self {
        case .vocabSize: return .vocabSize
        case .nEmbd: return .hiddenSize
        case .nLayer: return .layers
        case .nHead: return .heads
        case .nInner: return .intermediateSize
        case .nPositions, .nCtx: return .maxPositions
        case .activationFunction: return .activation
        case .layerNormEpsilon: return .layerNormEps
        case .tieWordEmbeddings: return .tieWordEmbeddings
        case .bos: return .bos
        case .eos: return .eos
        case .pad: return .pad
        case .mask: return .mask
        }
    }
}
public typealias GPT2Config = DialectConfig<GPT2ConfigKey>

/// llama.cpp's GGUF metadata keys of the gpt2 architecture (docs/model-family.md, "The GGUF form"): the sizes in the
/// order the GGUF form writes them, then the special ids (written with the tokenizer).
public enum GGUFConfigKey: String, ConfigDialect {
    case contextLength = "gpt2.context_length", embeddingLength = "gpt2.embedding_length", blockCount = "gpt2.block_count"
    case feedForwardLength = "gpt2.feed_forward_length", headCount = "gpt2.attention.head_count"
    case layerNormEpsilon = "gpt2.attention.layer_norm_epsilon"
    case bos = "tokenizer.ggml.bos_token_id", eos = "tokenizer.ggml.eos_token_id", pad = "tokenizer.ggml.padding_token_id"
    case mask = "tokenizer.ggml.mask_token_id"

    /// The keys of the model's sizes (and eps), and of the special ids.
    public static let sizes: [GGUFConfigKey] = [.contextLength, .embeddingLength, .blockCount, .feedForwardLength, .headCount, .layerNormEpsilon]
    public static let specialIDs: [GGUFConfigKey] = [.bos, .eos, .pad, .mask]

    public var field: ModelConfig.Field {
        switch self {
        case .contextLength: return .maxPositions
        case .embeddingLength: return .hiddenSize
        case .blockCount: return .layers
        case .feedForwardLength: return .intermediateSize
        case .headCount: return .heads
        case .layerNormEpsilon: return .layerNormEps
        case .bos: return .bos
        case .eos: return .eos
        case .pad: return .pad
        case .mask: return .mask
        }
    }
}
