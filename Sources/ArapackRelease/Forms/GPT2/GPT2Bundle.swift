import ArapackFormats
import ArapackModel
import ArapackTensor

/// A bundle in transformers' stock GPT-2 layout (docs/model-family.md, "The GPT-2 form"): a GPT2Config and
/// GPT2LMHeadModel's tensor names, linear weights transposed as GPT-2's Conv1D keeps them; it loads with no remote
/// code. Causal models only, and no int8 or int4 (compressed-tensors' layouts are made for nn.Linear, not Conv1D).
public struct GPT2Bundle: BundleForm {
    public init() {}
    public var name: String { "gpt2" }
    public var title: String { "GPT-2 form" }
    public var summary: String { "a bundle in transformers' stock GPT-2 layout, no remote code; AR only" }
    public var layout: NamingLayout { .gpt2 }
    public var dtypes: [String] { ["f32", "bf16", "f16"] }

    public func check(_ config: ModelConfig, dtype: String?, source: String) throws {
        guard config.causal else {
            throw ReleaseFormError(self, source: source, refusal: .bidirectional, reason: "GPT-2's attention is causal; write a native bundle (--to bundle)")
        }
        try checkDtype(dtype, source: source)
    }

    /// int8, int4: compressed-tensors' layouts are made for nn.Linear, and GPT-2 keeps its linear layers as Conv1D.
    public func dtypeAdvice(_ dtype: String) -> String {
        guard LinearQuantization.Scheme(rawValue: dtype) != nil else { return "it stores " + dtypes.joined(separator: ", ") }
        return "compressed-tensors' \(dtype) layout is made for nn.Linear weights ([out, in], scales along each output row), "
            + "and GPT-2 keeps its linear layers as Conv1D ([in, out]); write a native \(dtype) bundle (--to bundle) or use f32, bf16 or f16 with --to gpt2"
    }

    public func dtypeRefusal(_ dtype: String) -> String {
        LinearQuantization.Scheme(rawValue: dtype) != nil ? "--dtype \(dtype) is not written in the GPT-2 layout: " + dtypeAdvice(dtype) : standardDtypeRefusal(dtype)
    }

    public var modelTypes: [String] { [GPT2ConfigKey.modelType] }
    public func modelType(_ config: ModelConfig) -> String { GPT2ConfigKey.modelType }
    public func architecture(_ config: ModelConfig) -> String { Self.architecture }
    static let architecture = "GPT2LMHeadModel"

    /// A stock GPT2Config that makes transformers' `GPT2LMHeadModel` compute this (causal) model: every dropout 0,
    /// scores scaled by 1/sqrt(head_dim) and nothing else, exact GELU (`gelu`, not `gelu_new`) or ReLU. The form
    /// holds no int8 or int4, so `extra` is always empty.
    public func configJSON(_ config: ModelConfig, torchDtype: String, extra: [JSONValue.Member] = []) -> JSONValue {
        let fields = GPT2Config(config).members
        let tail = fields.firstIndex { $0.key == GPT2ConfigKey.tieWordEmbeddings.stringValue }!
        return .object([
            .init("architectures", .array([.string(Self.architecture)])),
            .init("model_type", .string(GPT2ConfigKey.modelType)),
        ] + fields[..<tail] + [
            // (n_ctx above is GPT2Config's older name for the context: transformers ignores it; llama.cpp's
            // convert_hf_to_gguf.py reads it.)
            .init("resid_pdrop", .double(0)),
            .init("embd_pdrop", .double(0)),
            .init("attn_pdrop", .double(0)),
            .init("scale_attn_weights", .bool(true)),
            .init("scale_attn_by_inverse_layer_idx", .bool(false)),
            .init("reorder_and_upcast_attn", .bool(false)),
            .init("add_cross_attention", .bool(false)),
            .init("use_cache", .bool(true)),
        ] + fields[tail...] + [.init(ModelConfig.torchDtypeKey, .string(torchDtype))] + extra)
    }

    /// GPT2Config's fields but n_ctx (transformers ignores it) and the mask token (GPT2Config has none), and the dtype.
    public var requiredConfigFields: [String] {
        GPT2ConfigKey.allCases.filter { $0 != .nCtx && $0 != .mask }.map(\.stringValue) + [ModelConfig.torchDtypeKey]
    }

    public func configProblems(_ config: JSONValue) -> [String] {
        config["architectures"] == .array([.string(Self.architecture)]) ? []
            : ["config.json architectures must be [\"\(Self.architecture)\"] in a GPT-2 bundle"]
    }

    public var foreignNames: String { "not of the GPT-2 form" }

    public var cardTags: [String] { ["gpt2"] }
    public var cardLoading: String { " in transformers' stock GPT-2 layout: it loads as `\(Self.architecture)` with no remote code." }
    public var positionsExpression: String { "model.config.n_positions" }
}
