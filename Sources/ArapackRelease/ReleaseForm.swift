import ArapackModel
import ArapackTensor

/// The forms a release is written in, and what each accepts: checked in one place, with one error type, as soon as
/// the model's config is known (before a byte is written). Adding a form is a case here and its writer.
public enum ReleaseForm: String, Sendable, CaseIterable {
    /// The native bundle (transformers with the wrapper, `trust_remote_code=True`).
    case bundle
    /// A bundle in transformers' stock GPT-2 layout (ARCHITECTURE.md, "The GPT-2 form").
    case gpt2
    /// One GGUF file for llama.cpp's gpt2 architecture (ARCHITECTURE.md, "The GGUF form").
    case gguf

    /// How the form names the family's tensors.
    public var layout: NamingLayout {
        switch self {
        case .bundle: return .release
        case .gpt2: return .gpt2
        case .gguf: return .gguf
        }
    }

    /// The form a bundle layout stands for.
    public init(bundleLayout layout: NamingLayout) { self = layout == .gpt2 ? .gpt2 : .bundle }

    /// Whether the form stores weights as `dtype` (nil: the source's); q8_0 is GGUF's and passes as nil here.
    public func accepts(_ dtype: DType?) -> Bool {
        switch self {
        case .bundle: return true
        case .gpt2, .gguf: return dtype != .i8
        }
    }

    /// Refuses a model this form cannot compute: bidirectional attention in the causal forms, an activation
    /// llama.cpp's gpt2 graph cannot express, int8 weights outside the native bundle.
    public func check(_ config: ModelConfig, dtype: DType?, source: String) throws {
        switch self {
        case .bundle: return
        case .gpt2:
            guard config.causal else { throw ReleaseFormError.bidirectional(form: self, source: source) }
            guard accepts(dtype) else { throw ReleaseFormError.int8(form: self, source: source) }
        case .gguf:
            guard config.causal else { throw ReleaseFormError.bidirectional(form: self, source: source) }
            guard config.activation == "gelu" else { throw ReleaseFormError.activation(form: self, source: source, found: config.activation) }
            guard accepts(dtype) else { throw ReleaseFormError.int8(form: self, source: source) }
        }
    }
}

/// A model a release form cannot hold (exit 2, before anything is written).
public enum ReleaseFormError: Error, Equatable, CustomStringConvertible, Sendable {
    case bidirectional(form: ReleaseForm, source: String)
    case activation(form: ReleaseForm, source: String, found: String)
    case int8(form: ReleaseForm, source: String)

    public var description: String {
        switch self {
        case let .bidirectional(.gguf, source):
            return "\(source): an MDLM (bidirectional) model has no GGUF form: llama.cpp's gpt2 architecture is causal"
        case let .bidirectional(_, source):
            return "\(source): an MDLM (bidirectional) model has no GPT-2 form: GPT-2's attention is causal; write a native bundle (--to bundle)"
        case let .activation(_, source, found):
            return "\(source): activation \"\(found)\" has no GGUF form: llama.cpp's gpt2 architecture always applies GELU (src/models/gpt2.cpp, LLM_FFN_GELU)"
        case let .int8(form, source):
            return "\(source): int8 is not written in the \(form == .gguf ? "GGUF form (its 8-bit format is q8_0)" : "GPT-2 layout") (write a native bundle for int8)"
        }
    }
}
