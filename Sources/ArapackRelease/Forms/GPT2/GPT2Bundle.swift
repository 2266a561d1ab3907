import ArapackFormats
import ArapackModel
import ArapackTensor

/// A bundle in transformers' stock GPT-2 layout (docs/model-family.md, "The GPT-2 form"): a GPT2Config and
/// GPT2LMHeadModel's tensor names, linear weights transposed as GPT-2's Conv1D keeps them; it loads with no remote
/// code. Causal models only, and no int8 (compressed-tensors' layout is made for nn.Linear, not Conv1D).
public struct GPT2Bundle: BundleForm {
    public init() {}
    public var name: String { "gpt2" }
    public var title: String { "GPT-2 form" }
    public var summary: String { "a bundle in transformers' stock GPT-2 layout, no remote code; AR only" }
    public var layout: NamingLayout { .gpt2 }
    public var dtypes: [String] { ["f32", "bf16", "f16"] }

    public func check(_ config: ModelConfig, dtype: DType?, source: String) throws {
        guard config.causal else {
            throw ReleaseFormError(self, source: source, refusal: .bidirectional, reason: "GPT-2's attention is causal; write a native bundle (--to bundle)")
        }
        try checkDtype(dtype, source: source)
    }

    /// int8: compressed-tensors' layout is made for nn.Linear, and GPT-2 keeps its linear layers as Conv1D.
    public func dtypeAdvice(_ dtype: String) -> String {
        guard dtype == "int8" else { return "it stores " + dtypes.joined(separator: ", ") }
        return "compressed-tensors' per-channel int8 layout is made for nn.Linear weights ([out, in], a scale per output row), "
            + "and GPT-2 keeps its linear layers as Conv1D ([in, out]); write a native int8 bundle (--to bundle) or use f32, bf16 or f16 with --to gpt2"
    }

    public func dtypeRefusal(_ dtype: String) -> String {
        dtype == "int8" ? "--dtype int8 is not written in the GPT-2 layout: " + dtypeAdvice(dtype) : standardDtypeRefusal(dtype)
    }

    public var modelTypes: [String] { [ConfigAssembly.gpt2ModelType] }
    public func modelType(_ config: ModelConfig) -> String { ConfigAssembly.gpt2ModelType }
    public func architecture(_ config: ModelConfig) -> String { Self.architecture }
    static let architecture = "GPT2LMHeadModel"

    /// A stock GPT2Config that makes transformers' `GPT2LMHeadModel` compute this (causal) model: every dropout 0,
    /// scores scaled by 1/sqrt(head_dim) and nothing else, exact GELU (`gelu`, not `gelu_new`) or ReLU. The form
    /// holds no int8, so `extra` is always empty.
    public func configJSON(_ config: ModelConfig, torchDtype: String, extra: [JSONValue.Member] = []) -> JSONValue {
        .object([
            .init("architectures", .array([.string(Self.architecture)])),
            .init("model_type", .string(ConfigAssembly.gpt2ModelType)),
        ] + Self.fields(config) + [
            // GPT2Config's older name for the context (transformers ignores it; llama.cpp's convert_hf_to_gguf.py reads it).
            .init("n_ctx", .int(config.maxPositions)),
            .init("resid_pdrop", .double(0)),
            .init("embd_pdrop", .double(0)),
            .init("attn_pdrop", .double(0)),
            .init("scale_attn_weights", .bool(true)),
            .init("scale_attn_by_inverse_layer_idx", .bool(false)),
            .init("reorder_and_upcast_attn", .bool(false)),
            .init("add_cross_attention", .bool(false)),
            .init("use_cache", .bool(true)),
        ] + config.commonTail(torchDtype: torchDtype) + extra)
    }

    /// The model's own fields of a GPT2Config, in order: written by `configJSON`, required by `verify` (with the
    /// common tail), so the list is spelled once.
    static func fields(_ c: ModelConfig) -> [JSONValue.Member] {
        [
            .init("vocab_size", .int(c.vocabSize)),
            .init("n_embd", .int(c.hiddenSize)),
            .init("n_layer", .int(c.layers)),
            .init("n_head", .int(c.heads)),
            .init("n_inner", .int(c.intermediateSize)),
            .init("n_positions", .int(c.maxPositions)),
            .init("activation_function", .string(c.activation)),
            .init("layer_norm_epsilon", .double(c.layerNormEps)),
        ]
    }

    /// The GPT-2 fields and the common tail (a GPT2Config has no mask token).
    public var requiredConfigFields: [String] {
        Self.fields(.placeholder).map(\.key) + ModelConfig.commonTailNames.filter { $0 != "mask_token_id" }
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
