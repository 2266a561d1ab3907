import ArapackFormats
import ArapackTensor

/// A config that cannot be an AraFusion model's. `origin` is the file or flag that stated a value, `source`
/// the model being assembled (both as the user named them).
public enum ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAnObject(origin: String, found: String)
    case nullSize(origin: String, field: String)
    case unknownModelType(origin: String, modelType: String)
    case gpt2Activation(origin: String, activation: String)
    case gpt2Flag(origin: String, field: String, required: Bool, found: String)
    /// Two sources state different values for one field.
    case conflict(source: String, field: String, first: String, firstOrigin: String, second: String, secondOrigin: String)
    case headsNotInferable(source: String)
    case missing(source: String, field: String)
    case notPositiveInteger(source: String, field: String, found: String, origin: String)
    case outOfBounds(source: String, field: String, value: Int, origin: String, bounds: ClosedRange<Int>)
    case activation(source: String, found: String, origin: String)
    case layerNormEps(source: String, found: String, origin: String)
    case dropout(source: String, found: String, origin: String)
    case causalNotBoolean(source: String)
    case headsDoNotDivide(source: String, hiddenSize: Int, hiddenOrigin: String, heads: Int, headsOrigin: String)
    case specialTokenOutsideVocabulary(source: String, role: String, id: Int, vocabSize: Int)

    public var description: String {
        switch self {
        case let .notAnObject(origin, found): return "\(origin): a config must be a JSON object, found \(found)"
        case let .nullSize(origin, field): return "\(origin): \(field) is null; it must be a positive integer"
        case let .unknownModelType(origin, type):
            return "\(origin): model_type \"\(type)\" is not an AraFusion model (\(ModelConfig.causalModelType) or \(ModelConfig.bidirectionalModelType))"
        case let .gpt2Activation(origin, act):
            return "\(origin): activation_function \"\(act)\" is not one of the family's: \"gelu\" (exact erf) or \"relu\""
        case let .gpt2Flag(origin, field, required, found): return "\(origin): \(field) must be \(required) for the AraFusion model, found \(found)"
        case let .conflict(source, field, first, firstOrigin, second, secondOrigin):
            return "\(source): \(field) is \(first) in \(firstOrigin) but \(second) in \(secondOrigin)"
        case let .headsNotInferable(source):
            return "\(source): the number of attention heads cannot be inferred from the tensors; pass --config with n_heads (or num_attention_heads)"
        case let .missing(source, field): return "\(source): \(field) is not stated by any config and cannot be inferred"
        case let .notPositiveInteger(source, field, found, origin): return "\(source): \(field) must be a positive integer, found \(found) in \(origin)"
        case let .outOfBounds(source, field, value, origin, bounds):
            return "\(source): \(field) \(value) in \(origin) is outside \(bounds.lowerBound)...\(bounds.upperBound), the sizes arapack accepts"
        case let .activation(source, found, origin): return "\(source): hidden_act must be \"gelu\" or \"relu\", found \"\(found)\" in \(origin)"
        case let .layerNormEps(source, found, origin): return "\(source): layer_norm_eps must be a finite number in (0, 1], found \(found) in \(origin)"
        case let .dropout(source, found, origin): return "\(source): dropout must be a number in [0, 1], found \(found) in \(origin)"
        case let .causalNotBoolean(source): return "\(source): is_causal (causal) must be true or false"
        case let .headsDoNotDivide(source, hidden, hiddenOrigin, heads, headsOrigin):
            return "\(source): hidden_size \(hidden) (\(hiddenOrigin)) is not divisible by num_attention_heads \(heads) (\(headsOrigin))"
        case let .specialTokenOutsideVocabulary(source, role, id, vocab): return "\(source): \(role)_token_id \(id) is outside the vocabulary of \(vocab)"
        }
    }
}

/// The AraFusion model family (docs/model-family.md): its tensor names and how a config maps to shapes.
public enum ModelFamily {
    /// Wrapper module names training adds in front of (or inside) every key.
    static let leadingWrappers = ["module.", "_orig_mod."]
    static let wrapperComponents = ["_fsdp_wrapped_module", "_checkpoint_wrapped_module"]
    /// The prefix the HF wrapper class adds (release names).
    public static let releasePrefix = "model."
    public static let embedding = "token_embedding.weight"
    public static let positionEmbedding = "position_embedding.weight"
    public static let finalNormWeight = "ln_f.weight"
    public static let finalNormBias = "ln_f.bias"
    public static let lmHead = "lm_head.weight"
    /// Every layer's tensors live under this prefix and the layer's index.
    public static let layerPrefix = "transformer.layers."

    /// The tensors of one encoder layer, by their names under `transformer.layers.{i}.` (the one place that
    /// spells them; NamingLayout maps them to GPT-2's).
    public enum LayerTensor: String, CaseIterable, Sendable {
        case inProjWeight = "self_attn.in_proj_weight", inProjBias = "self_attn.in_proj_bias"
        case outProjWeight = "self_attn.out_proj.weight", outProjBias = "self_attn.out_proj.bias"
        case linear1Weight = "linear1.weight", linear1Bias = "linear1.bias"
        case linear2Weight = "linear2.weight", linear2Bias = "linear2.bias"
        case norm1Weight = "norm1.weight", norm1Bias = "norm1.bias", norm2Weight = "norm2.weight", norm2Bias = "norm2.bias"

        /// The training name of this tensor in layer `i`.
        public func name(layer i: Int) -> String { ModelFamily.layerPrefix + "\(i)." + rawValue }

        /// The shape a config implies.
        public func shape(_ c: ModelConfig) -> [Int] {
            let d = c.hiddenSize, f = c.intermediateSize
            switch self {
            case .inProjWeight: return [3 * d, d]
            case .inProjBias: return [3 * d]
            case .outProjWeight: return [d, d]
            case .linear1Weight: return [f, d]
            case .linear1Bias: return [f]
            case .linear2Weight: return [d, f]
            case .outProjBias, .linear2Bias, .norm1Weight, .norm1Bias, .norm2Weight, .norm2Bias: return [d]
            }
        }

        /// The weights of nn.Linear modules (what int8 quantizes; see `isLinearModuleWeight`).
        public var isLinearModuleWeight: Bool { self == .outProjWeight || self == .linear1Weight || self == .linear2Weight }
    }

    /// A training key without the DDP / torch.compile / FSDP1 / activation-checkpointing wrappers.
    public static func normalize(_ key: String) -> String {
        var k = Substring(key)
        var stripped = true
        while stripped {
            stripped = false
            for w in leadingWrappers where k.hasPrefix(w) {
                k = k.dropFirst(w.count)
                stripped = true
            }
        }
        guard wrapperComponents.contains(where: { k.contains($0) }) else { return String(k) }
        return k.split(separator: ".", omittingEmptySubsequences: false).filter { !wrapperComponents.contains(String($0)) }.joined(separator: ".")
    }

    /// Tensor names and shapes a config implies (training names; `lm_head.weight` included).
    public static func expectedShapes(_ c: ModelConfig) -> [(name: String, shape: [Int])] {
        let d = c.hiddenSize
        var out: [(String, [Int])] = [(embedding, [c.vocabSize, d]), (positionEmbedding, [c.maxPositions, d])]
        for i in 0..<c.layers {
            out += LayerTensor.allCases.map { ($0.name(layer: i), $0.shape(c)) }
        }
        out += [(finalNormWeight, [d]), (finalNormBias, [d]), (lmHead, [c.vocabSize, d])]
        return out
    }

    /// A training name as (layer index, tensor of the layer), or nil for a name outside the layers.
    public static func layerTensor(_ training: String) -> (layer: Int, tensor: LayerTensor)? {
        guard training.hasPrefix(layerPrefix) else { return nil }
        let rest = training.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), let t = LayerTensor(rawValue: String(rest[rest.index(after: dot)...])) else {
            return nil
        }
        return (i, t)
    }

    /// Whether a training name is the weight of an `nn.Linear` module of the layers (out_proj, linear1, linear2):
    /// the weights int8 quantizes. compressed-tensors quantizes modules, so `in_proj_weight` (a bare parameter of
    /// nn.MultiheadAttention) cannot be; nor the tied embedding, whose tie would carry int8 values into the LM head.
    public static func isLinearModuleWeight(_ training: String) -> Bool {
        layerTensor(training)?.tensor.isLinearModuleWeight ?? false
    }

    /// The module a weight belongs to (`….linear1.weight` → `….linear1`), as compressed-tensors' `ignore` names it.
    public static func module(of weight: String) -> String { String(weight.dropLast(".weight".count)) }

    /// What is wrong with a set of tensors (training names) for `config`: missing, unexpected, misshapen or
    /// non-floating tensors, each naming the tensor as `display` spells it. `lm_head.weight` may be absent
    /// when `headOptional` (a tied model).
    public static func tensorProblems(_ config: ModelConfig, _ tensors: [String: TensorDescriptor], headOptional: Bool,
                                      display: (String) -> String) -> [String] {
        var problems: [String] = []
        let expected = expectedShapes(config)
        let missing = expected.filter { tensors[$0.name] == nil && !($0.name == lmHead && headOptional) }.map { display($0.name) }
        if !missing.isEmpty { problems.append("missing \(missing.count) tensor(s) the config implies: \(list(missing))") }
        let names = Set(expected.map(\.name))
        let unexpected = tensors.keys.filter { !names.contains($0) }.map(display).sorted()
        if !unexpected.isEmpty {
            problems.append("\(unexpected.count) tensor(s) are not part of an AraFusion model of this config: \(list(unexpected))")
        }
        for e in expected {
            guard let d = tensors[e.name] else { continue }
            if d.shape != e.shape { problems.append("tensor \"\(display(e.name))\" has shape \(d.shape), the config implies \(e.shape)") }
            if ![.f32, .f16, .bf16, .f64].contains(d.dtype) {
                problems.append("tensor \"\(display(e.name))\" is \(d.dtype.name); model weights must be floating point")
            }
        }
        return problems
    }

    /// What an int8 weight's scale tensor adds to the weight's name (docs/bundle.md).
    public static let int8ScaleSuffix = "_scale"

    /// Folds int8 pairs (docs/bundle.md): a weight `X` (I8 [rows, cols]) with `X_scale` (F32 [rows, groups],
    /// groups dividing cols) stands for one float32 tensor `X`. Returns the descriptors with each pair folded
    /// and, by weight name, the name of its scale.
    public static func foldQuantized(_ tensors: [String: TensorDescriptor]) -> (tensors: [String: TensorDescriptor], scales: [String: String]) {
        var out = tensors
        var scales: [String: String] = [:]
        for (name, scale) in tensors where name.hasSuffix(ModelFamily.int8ScaleSuffix) {
            let base = String(name.dropLast(ModelFamily.int8ScaleSuffix.count))
            guard let q = tensors[base], q.dtype == .i8, q.shape.count == 2, scale.dtype == .f32, scale.shape.count == 2,
                  scale.shape[0] == q.shape[0], scale.shape[1] > 0, q.shape[1] % scale.shape[1] == 0 else { continue }
            out[base]!.dtype = .f32
            out.removeValue(forKey: name)
            scales[base] = name
        }
        return (out, scales)
    }

    public static func list(_ names: [String]) -> String {
        names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", … (\(names.count - 5) more)" : "")
    }

    /// Config fields the tensor shapes determine (HF names), or nil where the tensor is absent.
    public static func fieldsFromShapes(_ shapes: [String: [Int]]) -> [String: Int] {
        var f: [String: Int] = [:]
        if let e = shapes[embedding], e.count == 2 {
            f["vocab_size"] = e[0]
            f["hidden_size"] = e[1]
        }
        if let p = shapes[positionEmbedding], p.count == 2 { f["max_position_embeddings"] = p[0] }
        if let l = shapes[LayerTensor.linear1Weight.name(layer: 0)], l.count == 2 { f["intermediate_size"] = l[0] }
        let layerIndices = shapes.keys.compactMap { key -> Int? in
            guard key.hasPrefix(layerPrefix) else { return nil }
            return Int(key.dropFirst(layerPrefix.count).prefix { $0 != "." })
        }
        if let top = layerIndices.max() { f["num_hidden_layers"] = top + 1 }
        return f
    }
}

/// The model's hyper-parameters under their config.json (HF) names.
public struct ModelConfig: Equatable, Sendable {
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

    /// What differs between the functions the two configs compute, one `name: this vs other` phrase each: the
    /// sizes, the activation, the LayerNorm eps, the causality and the tie; never training-only settings (dropout)
    /// or the special token ids, which no logit depends on. Empty: the same function.
    public func functionDifferences(from other: ModelConfig) -> [String] {
        let fields: [(String, String, String)] = [
            ("vocab_size", "\(vocabSize)", "\(other.vocabSize)"), ("hidden_size", "\(hiddenSize)", "\(other.hiddenSize)"),
            ("num_hidden_layers", "\(layers)", "\(other.layers)"), ("num_attention_heads", "\(heads)", "\(other.heads)"),
            ("intermediate_size", "\(intermediateSize)", "\(other.intermediateSize)"),
            ("max_position_embeddings", "\(maxPositions)", "\(other.maxPositions)"), ("hidden_act", activation, other.activation),
            ("layer_norm_eps", "\(layerNormEps)", "\(other.layerNormEps)"), ("is_causal", "\(causal)", "\(other.causal)"),
            ("tie_word_embeddings", "\(tieWordEmbeddings)", "\(other.tieWordEmbeddings)"),
        ]
        return fields.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.1) vs \($0.2)" }
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
        ] + hfFields + commonTail(torchDtype: torchDtype) + extra)
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

    /// The model's own fields of config.json (docs/model-family.md's names), in order: written by `hfJSON`, required by
    /// `verify` (with the common tail), so the list is spelled once.
    private var hfFields: [JSONValue.Member] {
        [
            .init("vocab_size", .int(vocabSize)),
            .init("hidden_size", .int(hiddenSize)),
            .init("num_hidden_layers", .int(layers)),
            .init("num_attention_heads", .int(heads)),
            .init("intermediate_size", .int(intermediateSize)),
            .init("max_position_embeddings", .int(maxPositions)),
            .init("hidden_act", .string(activation)),
            .init("layer_norm_eps", .double(layerNormEps)),
            .init("dropout", .double(dropout)),
            .init("is_causal", .bool(causal)),
        ]
    }

    /// The members every config.json form ends with: the tie, the special ids and the dtype.
    public func commonTail(torchDtype: String) -> [JSONValue.Member] {
        [
            .init("tie_word_embeddings", .bool(tieWordEmbeddings)),
            .init("bos_token_id", .int(bos)),
            .init("eos_token_id", .int(eos)),
            .init("pad_token_id", .int(pad)),
            .init("mask_token_id", .int(mask)),
            .init("torch_dtype", .string(torchDtype)),
        ]
    }

    /// A config of the smallest sizes, for the field names of the config.json forms.
    public static let placeholder = ModelConfig(vocabSize: 1, hiddenSize: 1, layers: 1, heads: 1, intermediateSize: 1, maxPositions: 1,
                                                activation: "gelu", layerNormEps: 1e-5, dropout: 0, causal: true, tieWordEmbeddings: true,
                                                bos: 0, eos: 0, pad: 0, mask: 0)
    /// The names of the family's own config.json fields, in order (`hfJSON` writes them).
    public static var hfFieldNames: [String] { placeholder.hfFields.map(\.key) }
    /// The names of the common tail, in order.
    public static var commonTailNames: [String] { placeholder.commonTail(torchDtype: "float32").map(\.key) }

    /// The training script's `config` dict (docs/model-family.md), as `--to torch` stores it.
    public var trainingJSON: JSONValue {
        .object([
            .init("vocab_size", .int(vocabSize)), .init("d_model", .int(hiddenSize)), .init("n_layers", .int(layers)),
            .init("n_heads", .int(heads)), .init("d_ff", .int(intermediateSize)), .init("max_seq_len", .int(maxPositions)),
            .init("dropout", .double(dropout)), .init("activation", .string(activation)), .init("causal", .bool(causal)),
            .init("layer_norm_eps", .double(layerNormEps)),
        ])
    }
}

/// Assembles a `ModelConfig` from every place that says something about it, refusing disagreements.
public struct ConfigAssembly {
    /// Training-config names → config.json names.
    static let trainingNames = [
        "vocab_size": "vocab_size", "d_model": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
        "d_ff": "intermediate_size", "max_seq_len": "max_position_embeddings", "dropout": "dropout",
        "activation": "hidden_act", "causal": "is_causal", "layer_norm_eps": "layer_norm_eps",
    ]
    /// GPT2Config names → config.json names (a GPT-2 bundle's config.json).
    static let gpt2Names = [
        "vocab_size": "vocab_size", "n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
        "n_inner": "intermediate_size", "n_positions": "max_position_embeddings", "n_ctx": "max_position_embeddings", "activation_function": "hidden_act",
        "layer_norm_epsilon": "layer_norm_eps", "tie_word_embeddings": "tie_word_embeddings", "bos_token_id": "bos_token_id",
        "eos_token_id": "eos_token_id", "pad_token_id": "pad_token_id", "mask_token_id": "mask_token_id",
    ]
    public static let gpt2ModelType = "gpt2"
    static let integerFields = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                                "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id"]
    /// Bounds on every size, checked before anything is sized from a config (ROBUSTNESS.md): within them no
    /// shape, byte count or parameter count can overflow. The released model is far inside (76,800 / 1,024 /
    /// 24 / 16 / 4,096 / 512).
    public static let bounds: [String: ClosedRange<Int>] = [
        "vocab_size": 1...(1 << 24), "hidden_size": 1...(1 << 16), "num_hidden_layers": 1...1024,
        "num_attention_heads": 1...(1 << 16), "intermediate_size": 1...(1 << 20), "max_position_embeddings": 1...(1 << 20),
    ]
    /// The family's special token ids (docs/model-family.md), used when nothing else states them.
    static let defaultSpecialIDs = ["bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 5, "mask_token_id": 62]

    private var values: [String: (value: JSONValue, origin: String)] = [:]
    /// Fields that fell back to a default (reported to the user).
    public private(set) var assumed: [String] = []
    private let source: String

    public init(source: String) { self.source = source }

    /// Adds a config in either the training script's names or config.json names. Unknown fields are ignored.
    public mutating func add(_ config: JSONValue, origin: String) throws {
        guard let members = config.members else { throw ConfigError.notAnObject(origin: origin, found: config.kindName) }
        let gpt2Style = config["model_type"]?.stringValue == Self.gpt2ModelType
        let hfStyle = !gpt2Style && members.contains { $0.key == "hidden_size" || $0.key == "num_hidden_layers" }
        if gpt2Style { try Self.checkGPT2(config, origin: origin) }
        for m in members {
            let field = gpt2Style ? (Self.gpt2Names[m.key] ?? "gpt2:" + m.key) : hfStyle ? m.key : (Self.trainingNames[m.key] ?? m.key)
            guard Self.integerFields.contains(field) || ["hidden_act", "layer_norm_eps", "dropout", "is_causal", "tie_word_embeddings"].contains(field) else { continue }
            if m.value == .null {
                // GPT2Config's n_inner may be null (4 × n_embd); the shapes then state it. Any other null size is an error.
                if gpt2Style && m.key == "n_inner" || !Self.integerFields.contains(field) { continue }
                throw ConfigError.nullSize(origin: origin, field: m.key)
            }
            try add(field, m.value, origin: origin)
        }
        if gpt2Style { try add("is_causal", .bool(true), origin: origin + " model_type gpt2") }
        if hfStyle, values["is_causal"] == nil, let type = config["model_type"]?.stringValue {
            switch type {
            case ModelConfig.causalModelType: try add("is_causal", .bool(true), origin: origin + " model_type")
            case ModelConfig.bidirectionalModelType: try add("is_causal", .bool(false), origin: origin + " model_type")
            default: throw ConfigError.unknownModelType(origin: origin, modelType: type)
            }
        }
    }

    /// Refuses a GPT2Config whose GPT2LMHeadModel would compute something else than the AraFusion AR model.
    public static func checkGPT2(_ config: JSONValue, origin: String) throws {
        if let act = config["activation_function"]?.stringValue, act != "gelu" && act != "relu" {
            throw ConfigError.gpt2Activation(origin: origin, activation: act)
        }
        for (field, required) in [("scale_attn_weights", true), ("scale_attn_by_inverse_layer_idx", false), ("add_cross_attention", false)] {
            if let v = config[field], v != .null, v.boolValue != required {
                throw ConfigError.gpt2Flag(origin: origin, field: field, required: required, found: v.serialized())
            }
        }
    }

    /// Adds the fields tensor shapes determine.
    public mutating func addShapes(_ shapes: [String: [Int]]) throws {
        for (field, v) in ModelFamily.fieldsFromShapes(shapes).sorted(by: { $0.key < $1.key }) {
            try add(field, .int(v), origin: "the tensor shapes")
        }
    }

    /// Adds one field; a different value already stated elsewhere is an error naming both.
    public mutating func add(_ field: String, _ value: JSONValue, origin: String) throws {
        if let existing = values[field] {
            guard Self.same(existing.value, value) else {
                throw ConfigError.conflict(source: source, field: field, first: Self.show(existing.value), firstOrigin: existing.origin, second: Self.show(value), secondOrigin: origin)
            }
            return
        }
        values[field] = (value, origin)
    }

    /// Whether `field` has been stated.
    public func has(_ field: String) -> Bool { values[field] != nil }

    /// The config, with defaults for what may be defaulted and errors for what may not.
    public mutating func resolve() throws -> ModelConfig {
        func int(_ f: String) throws -> Int {
            guard let v = values[f] else {
                if f == "num_attention_heads" {
                    throw ConfigError.headsNotInferable(source: source)
                }
                throw ConfigError.missing(source: source, field: f)
            }
            guard let i = v.value.intValue, i > 0 || f.hasSuffix("_token_id") && i >= 0 else {
                throw ConfigError.notPositiveInteger(source: source, field: f, found: String(Self.show(v.value).prefix(40)), origin: v.origin)
            }
            if let range = Self.bounds[f], !range.contains(i) {
                throw ConfigError.outOfBounds(source: source, field: f, value: i, origin: v.origin, bounds: range)
            }
            return i
        }
        func origin(_ f: String) -> String { values[f]?.origin ?? "the defaults" }
        func defaulted(_ f: String, _ d: JSONValue) -> JSONValue {
            if let v = values[f] { return v.value }
            assumed.append("\(f)=\(Self.show(d))")
            return d
        }
        for (f, d) in Self.defaultSpecialIDs.sorted(by: { $0.key < $1.key }) where values[f] == nil {
            values[f] = (.int(d), "the AraFusion defaults")
        }
        let act = defaulted("hidden_act", .string("gelu")).stringValue ?? ""
        guard act == "gelu" || act == "relu" else { throw ConfigError.activation(source: source, found: String(act.escapingControlCharacters.prefix(40)), origin: origin("hidden_act")) }
        guard let eps = defaulted("layer_norm_eps", .double(1e-5)).doubleValue, eps.isFinite, eps > 0, eps <= 1 else {
            throw ConfigError.layerNormEps(source: source, found: String(Self.show(values["layer_norm_eps"]?.value ?? .null).prefix(40)), origin: origin("layer_norm_eps"))
        }
        if let d = values["dropout"], !(d.value.doubleValue.map { $0.isFinite && (0...1).contains($0) } ?? false) {
            throw ConfigError.dropout(source: source, found: String(Self.show(d.value).prefix(40)), origin: d.origin)
        }
        guard let causal = defaulted("is_causal", .bool(true)).boolValue else { throw ConfigError.causalNotBoolean(source: source) }
        let config = ModelConfig(
            vocabSize: try int("vocab_size"), hiddenSize: try int("hidden_size"), layers: try int("num_hidden_layers"),
            heads: try int("num_attention_heads"), intermediateSize: try int("intermediate_size"),
            maxPositions: try int("max_position_embeddings"), activation: act, layerNormEps: eps,
            dropout: values["dropout"]?.value.doubleValue ?? 0, causal: causal,
            tieWordEmbeddings: values["tie_word_embeddings"]?.value.boolValue ?? true,
            bos: try int("bos_token_id"), eos: try int("eos_token_id"), pad: try int("pad_token_id"), mask: try int("mask_token_id"))
        guard config.hiddenSize % config.heads == 0 else {
            throw ConfigError.headsDoNotDivide(source: source, hiddenSize: config.hiddenSize, hiddenOrigin: origin("hidden_size"), heads: config.heads, headsOrigin: origin("num_attention_heads"))
        }
        for (name, id) in [("bos", config.bos), ("eos", config.eos), ("pad", config.pad), ("mask", config.mask)] where id >= config.vocabSize {
            throw ConfigError.specialTokenOutsideVocabulary(source: source, role: name, id: id, vocabSize: config.vocabSize)
        }
        return config
    }

    public static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = a.doubleValue, let y = b.doubleValue { return x == y }
        return a == b
    }

    public static func show(_ v: JSONValue) -> String { v.serialized() }
}
