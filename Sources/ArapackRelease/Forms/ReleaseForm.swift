import ArapackFormats
import ArapackModel
import ArapackTensor

/// A form a release is written in (an output `verify` and `sign` take): how it names the family's tensors, and how a
/// written one is checked (`verify`). Its writing, dtypes and refusals are an `OutputForm`'s.
public protocol ReleaseForm: OutputForm {
    /// How the form names the family's tensors.
    var layout: NamingLayout { get }
    /// The structural checks of a written release at `path` (`verify`); `signature` is a signature file inside it
    /// that the release does not list.
    func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport
}

/// A model a release form cannot hold (exit 2, before anything is written). Matched by `form` and `refusal`; the
/// text is the form's own.
public struct ReleaseFormError: Error, CustomStringConvertible, Sendable {
    public enum Refusal: Equatable, Sendable {
        /// A bidirectional (MDLM) model in a causal form.
        case bidirectional
        /// An activation the form's consumer cannot compute.
        case activation(String)
        /// Weights in a dtype the form does not store (its `--dtype` name).
        case dtype(String)
    }

    /// The form's name (`OutputForm.name`).
    public let form: String
    public let source: String
    public let refusal: Refusal
    /// The form's title and why, in its words.
    let title: String, reason: String

    init(_ form: some OutputForm, source: String, refusal: Refusal, reason: String) {
        self.form = form.name
        self.title = form.title
        self.source = source
        self.refusal = refusal
        self.reason = reason
    }

    public var description: String {
        switch refusal {
        case .bidirectional: return "\(source): an MDLM (bidirectional) model has no \(title): \(reason)"
        case let .activation(found): return "\(source): activation \"\(found)\" has no \(title): \(reason)"
        case let .dtype(dtype): return "\(source): \(dtype) is not written in the \(title) (\(reason))"
        }
    }
}

/// `verify` or `sign` pointed at something that is not a release (a training checkpoint, a bare safetensors file):
/// says what it is and which command fits (exit 2).
public struct NotARelease: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let format: SourceFormat

    public var description: String {
        let what: String
        switch format {
        case .torchZip: what = "a torch.save checkpoint"
        case .torchLegacy: what = "a legacy (pre-1.6) torch.save checkpoint"
        case .dcp: what = "a torch.distributed.checkpoint (DCP) folder"
        case .safetensors: what = "a safetensors file"
        case .safetensorsSharded: what = "a sharded safetensors index"
        case .archive, .gguf: what = "a release"
        }
        return "\(path) is \(what), not a release (a bundle folder, its .tar.zst archive or a GGUF file): "
            + "`arapack inspect \(path)` describes it; `arapack convert \(path) DST` makes a release of it, which verify and sign then take"
    }
}
