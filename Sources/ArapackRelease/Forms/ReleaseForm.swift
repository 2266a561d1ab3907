import ArapackFormats
import ArapackModel
import ArapackTensor

/// A form a release is written in: how it names the family's tensors, what it holds (checked once, as soon as the
/// model's config is known, before a byte is written) and how a written one is read back (`verify`). Each form is
/// one type in its own file; `ReleaseForms.all` lists them.
public protocol ReleaseForm: Sendable {
    /// The name `convert --to` takes, the signed provenance records and errors carry.
    var name: String { get }
    /// What the form is, in error messages ("GPT-2 form").
    var title: String { get }
    /// What it holds and who loads it, for `convert --help`.
    var summary: String { get }
    /// How the form names the family's tensors.
    var layout: NamingLayout { get }
    /// The `--dtype` values the form stores (`f32`, `bf16`, `f16`, `int8`, `q8_0`).
    var dtypes: [String] { get }
    /// Why the form does not store `dtype` (a `--dtype` name it does not list), for the error that refuses it.
    func dtypeAdvice(_ dtype: String) -> String
    /// The usage error of `convert --to NAME --dtype dtype` when the form does not store `dtype`.
    func dtypeRefusal(_ dtype: String) -> String
    /// What a `--dtype` only this form writes means when given to another target (`int8` → bundles only).
    var dtypeNotes: [String: String] { get }
    /// Refuses a model this form cannot compute (`ReleaseFormError`): the form's own rules; `dtype` is the weights'
    /// dtype (nil: the source's).
    func check(_ config: ModelConfig, dtype: DType?, source: String) throws
    /// Whether a release of this form can be at `format` (what `SourceDetection` found there).
    func isWritten(as format: SourceFormat) -> Bool
    /// The structural checks of a written release at `path` (`verify`); `signature` is a signature file inside it
    /// that the release does not list.
    func verify(path: String, signature: String?, progress: Progress) throws -> VerifyReport
}

extension ReleaseForm {
    /// What the form stores, and which forms write `dtype`.
    public func dtypeAdvice(_ dtype: String) -> String {
        let writers = ReleaseForms.all.filter { $0.dtypes.contains(dtype) }.map { "--to " + $0.name }
        return "it stores " + dtypes.joined(separator: ", ") + (writers.isEmpty ? "" : "; \(dtype) is written by " + writers.joined(separator: " or "))
    }

    /// The usage error, by default: the note of the form that owns `dtype`, else the form and what it stores.
    public func dtypeRefusal(_ dtype: String) -> String { standardDtypeRefusal(dtype) }

    public func standardDtypeRefusal(_ dtype: String) -> String {
        ReleaseForms.note(for: dtype) ?? "--dtype \(dtype) is not written in the \(title): \(dtypeAdvice(dtype))"
    }

    public var dtypeNotes: [String: String] { [:] }

    /// Refuses weights in a dtype the form does not store.
    func checkDtype(_ dtype: DType?, source: String) throws {
        guard let dtype, !accepts(dtype) else { return }
        let name = ReleaseForms.dtypeName(dtype)
        throw ReleaseFormError(self, source: source, refusal: .dtype(name), reason: dtypeAdvice(name))
    }

    /// Whether the form stores weights as `dtype` (nil: the source's, always accepted).
    public func accepts(_ dtype: DType?) -> Bool {
        guard let dtype else { return true }
        return dtypes.contains(ReleaseForms.dtypeName(dtype))
    }
}

/// Every release form, and the lookups over them.
public enum ReleaseForms {
    /// The forms, in the order `convert --to` lists them. Adding a form: its file, and a line here.
    public static let all: [any ReleaseForm] = [NativeBundle(), GPT2Bundle(), GGUFRelease()]

    /// The form `convert --to` names.
    public static func named(_ name: String) -> (any ReleaseForm)? { all.first { $0.name == name } }

    /// The bundle forms (folders with config.json).
    public static var bundles: [any BundleForm] { all.compactMap { $0 as? any BundleForm } }

    /// The bundle form whose config.json carries `modelType`.
    public static func bundleForm(modelType: String) -> (any BundleForm)? { bundles.first { $0.modelTypes.contains(modelType) } }

    /// The form a written release at `path` is read back as: by its bytes (a GGUF file), else a bundle (its
    /// config.json then says which bundle form).
    /// Throws `NotARelease` for a training checkpoint or a bare safetensors file (what `verify` and `sign` were
    /// pointed at by mistake); a folder without a manifest is read as a bundle, whose checks then say what is missing.
    public static func reading(_ path: String) throws -> any ReleaseForm {
        let format = try SourceDetection.detect(path).format
        let isFolder = (try? FileKind(atPath: NamedOutput.resolvingSymbolicLinks(path))) == .directory
        switch format {
        case .torchZip, .torchLegacy: throw NotARelease(path: path, format: format)
        case .safetensors where !isFolder, .safetensorsSharded where !isFolder: throw NotARelease(path: path, format: format)
        case .dcp where !pathExists(path + "/" + Manifest.fileName): throw NotARelease(path: path, format: format)
        default: return all.first { $0.isWritten(as: format) } ?? NativeBundle()
        }
    }

    /// The note of the form that owns `dtype` (`NativeBundle`'s for int8, `GGUFRelease`'s for q8_0), if one has.
    public static func note(for dtype: String) -> String? { all.lazy.compactMap { $0.dtypeNotes[dtype] }.first }

    /// `--dtype`'s name of a tensor dtype.
    static func dtypeName(_ dtype: DType) -> String {
        switch dtype {
        case .i8: return "int8"
        default: return dtype.name.lowercased()
        }
    }
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

    /// The form's name (`ReleaseForm.name`).
    public let form: String
    public let source: String
    public let refusal: Refusal
    /// The form's title and why, in its words.
    let title: String, reason: String

    init(_ form: some ReleaseForm, source: String, refusal: Refusal, reason: String) {
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
