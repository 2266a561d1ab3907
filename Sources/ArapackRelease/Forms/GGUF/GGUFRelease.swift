import ArapackFormats
import ArapackModel
import ArapackTensor

/// One GGUF file for llama.cpp's gpt2 architecture (docs/model-family.md, "The GGUF form"), written by `GGUFExport` and
/// read back by `GGUFVerifier`: causal models with GELU (llama.cpp's gpt2 graph always applies it) and a tokenizer;
/// matrices f32, bf16, f16 or q8_0.
public struct GGUFRelease: ReleaseForm {
    public init() {}
    public var name: String { "gguf" }
    public var title: String { "GGUF form" }
    public var summary: String { "one file for llama.cpp; AR with GELU only, needs a tokenizer" }
    public var layout: NamingLayout { .gguf }
    public var dtypes: [String] { ["f32", "bf16", "f16", "q8_0"] }

    public func check(_ config: ModelConfig, dtype: DType?, source: String) throws {
        guard config.causal else {
            throw ReleaseFormError(self, source: source, refusal: .bidirectional, reason: "llama.cpp's gpt2 architecture is causal")
        }
        guard config.activation == "gelu" else {
            throw ReleaseFormError(self, source: source, refusal: .activation(config.activation),
                                   reason: "llama.cpp's gpt2 architecture always applies GELU (src/models/gpt2.cpp, LLM_FFN_GELU)")
        }
        try checkDtype(dtype, source: source)
    }

    /// q8_0 is GGUF's own block format.
    public var dtypeNotes: [String: String] { ["q8_0": "--dtype q8_0 is GGUF's block format: it applies to --to gguf (bundles take int8)"] }

    public func isWritten(as format: SourceFormat) -> Bool { format == .gguf }

    public func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport {
        try GGUFVerifier.verify(path: path)
    }
}
