import ArapackFormats
import ArapackTensor

/// What `arapack convert` does, as a library type: read the source (a release bundle is verified first), check
/// it against the family, cast or quantize, write the output into a temporary sibling, optionally run parity
/// and sign, then commit (with the archive, when asked: archive and sidecar on disk before the bundle moves
/// into place). Nothing exists at the destination unless everything succeeded.
public struct Conversion {
    public var source: String
    /// DST; a trailing slash is ignored.
    public var destination: String
    /// What to write (`ReleaseForms.all`), and how.
    public var form: any OutputForm
    public var options: OutputOptions
    /// A config adding to or checking the source's (`--config`).
    public var configFile: String?
    /// A tokenizer folder to check and carry (`--tokenizer`); a source bundle's own is kept otherwise.
    public var tokenizer: String?
    public var allowUntied = false
    /// Also write DST.tar.zst and its .sha256 (bundles).
    public var archive = false
    /// Replace an existing DST (only once the new one is complete).
    public var force = false
    /// Whether the conversion will be signed, for the checks made before the key is read (`signing` says so once set).
    public var signs = false
    /// Sign the bundle before it moves into place: the key and the options the signed provenance records.
    public var signing: (key: ECDSAKey, options: Provenance.Options)?
    /// Parity of the written bundle against the source before anything moves into place (`--parity`): a failure
    /// stops the conversion (`ConversionError.parityFailed`, nothing written); the summary goes into the card, the
    /// manifest and the signed provenance.
    public var parity: ParityRequest?
    /// Notes for the user (a stale temporary removed, fields assumed).
    public var note: (String) -> Void = { _ in }

    public init(source: String, destination: String, form: any OutputForm, options: OutputOptions = OutputOptions()) {
        self.source = source
        self.destination = trimmingTrailingSlashes(destination)
        self.form = form
        self.options = options
    }

    public var archivePath: String { destination + ".tar.zst" }

    /// What a finished conversion reports.
    public struct Result {
        public let model: ReleaseModel
        /// The bundle's manifest (nil for torch and DCP outputs).
        public let manifest: Manifest?
        /// The parity run, when one was asked for.
        public var parity: ParityReport? = nil
        /// What the release lacks or does otherwise than the source (no tokenizer, a tokenizer llama.cpp reads
        /// otherwise), for the user to be told once it is written, even under `--quiet`.
        public var warnings: [String] = []
    }

    /// The files and folders this conversion reads: the source, `--config`, `--tokenizer`, and `otherInputs`.
    public var inputs: [String] { [source] + [configFile, tokenizer].compactMap { $0 } + otherInputs }
    /// Further files the caller read for it (the model card, the signing key, probe ids), kept apart from the outputs.
    public var otherInputs: [String] = []

    /// Checks the outputs before anything is read: DST's folder exists; no output is, lies inside or contains an
    /// input; an existing DST (and archive) is refused without `force`, and with it unless arapack wrote it
    /// (`DestinationGuard`). Nothing is changed but a killed run's temporaries beside the outputs, which are removed.
    public func checkOutputs() throws {
        let parent = splitPath(destination).0
        guard parent.isEmpty || pathExists(parent) else { throw ConversionError.noParentFolder(parent) }
        let archiveFiles = archive ? [archivePath, ReleaseArchive.sidecar(of: archivePath)] : []
        // A signed GGUF's signature goes beside it (a bundle's inside it).
        let signatureFile: [String]
        if signing != nil || signs, form is GGUFRelease { signatureFile = [destination + ".sig"] } else { signatureFile = [] }
        try DestinationGuard.checkApart(outputs: [destination] + archiveFiles + signatureFile, inputs: inputs)
        // A killed run's temporaries beside the outputs go first, whether this run then writes or refuses.
        for path in [destination, archivePath, ReleaseArchive.sidecar(of: archivePath)] {
            let resolved = (try? NamedOutput.resolvingSymbolicLinks(path)) ?? path
            for stale in TemporaryFiles.removeStale(of: resolved) { note("removed \(stale), left by an interrupted run") }
        }
        for path in signatureFile where pathExists(path) {
            guard force else { throw ConversionError.exists(path) }
            try DestinationGuard.checkReplaceable(path, as: .signature)
        }
        for path in [destination] + (archive ? [archivePath] : []) where pathExists(path) && !force {
            if path == destination && archive && !pathExists(archivePath) { throw ConversionError.archiveMissing(destination, archivePath) }
            throw ConversionError.exists(path)
        }
        guard force else { return }
        if pathExists(destination) { try DestinationGuard.checkReplaceable(destination, as: form.destinationKind) }
        for (path, kind) in zip(archiveFiles, [DestinationGuard.Kind.archive, .archiveSidecar]) where pathExists(path) {
            try DestinationGuard.checkReplaceable(path, as: kind)
        }
    }

    public func run(progress: Progress) throws -> Result {
        try checkOutputs()
        // Written where the names lead: a DST that is a link to a folder gets the new folder, the link stays.
        let dst = try NamedOutput.resolvingSymbolicLinks(destination)
        return try write(try readModel(progress: progress), at: dst, progress: progress)
    }

    /// Reads the source as this conversion asks (its config, tokenizer and tie), once the outputs are checked.
    public func readModel(progress: Progress) throws -> ReleaseModel {
        // A release bundle (folder or archive) as source is verified first: damage in it (a lying manifest,
        // a malformed tokenizer or config) must not be laundered into a fresh bundle with a valid manifest.
        let sourceIsBundle = (try? SourceDetection.detect(source))?.format == .archive || pathExists(source + "/" + Manifest.fileName)
        if sourceIsBundle {
            let check = try BundleVerifier.verify(path: source, progress: progress)
            if !check.passed { throw ConversionError.damagedSource(source, check.problems) }
        }
        let tokenizerFiles = try tokenizer.map { try TokenizerFiles(directory: $0) }
        let model = try ReleaseModel(path: source, configFile: configFile, tokenizer: tokenizerFiles, allowUntied: allowUntied)
        if !model.assumedFields.isEmpty {
            note("no config states \(model.assumedFields.joined(separator: ", ")); assumed (pass --config to say otherwise)")
        }
        return model
    }

    /// Writes `model` (read by `readModel`, perhaps for another conversion of the same source) at `dst` in this
    /// conversion's form.
    public func write(_ model: ReleaseModel, at dst: String, progress: Progress) throws -> Result {
        var result = try form.write(model, for: self, at: dst, progress: progress)
        if let scheme = model.ggufScheme, scheme.quantizes {
            result.warnings.append("\(destination): lossy: the source's \(scheme.name) blocks were read dequantized to float32, as llama.cpp computes with them; the checkpoint's own values are not in the GGUF file")
        }
        return result
    }
}

/// Why a conversion stopped before reading the model (exit 2).
public enum ConversionError: Error, CustomStringConvertible {
    case noParentFolder(String)
    case exists(String)
    /// An output is an input, lies inside one or contains one (refused with or without `--force`).
    case overlapsInput(output: String, input: String, DestinationGuard.Overlap)
    /// `--force` met something arapack did not write: what it expected there and why this is not it.
    case notReplaceable(path: String, expected: String, reason: String)
    case archiveMissing(String, String)
    case damagedSource(String, [String])
    /// `--parity` failed: the report says how (nothing was written).
    case parityFailed(ParityReport)

    public var description: String {
        switch self {
        case let .noParentFolder(parent): return "\(parent): the folder for DST does not exist"
        case let .exists(path): return "\(path) already exists; pass --force to replace it"
        case let .overlapsInput(output, input, overlap):
            return "\(output) \(overlap.rawValue) \(input), which this conversion reads; write the output elsewhere (nothing was read or changed)"
        case let .notReplaceable(path, expected, reason):
            return "\(path) is not \(expected) arapack wrote (\(reason)); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"
        case let .archiveMissing(dst, archive):
            return "\(dst) already exists but \(archive) does not (a run stopped between the two?); pass --force to write both again"
        case let .damagedSource(source, problems):
            return "\(source): the source bundle fails verification (\(problems[0])\(problems.count > 1 ? "; and \(problems.count - 1) more" : "")); run arapack verify \(source)"
        case let .parityFailed(report):
            return "\(report.bundle): parity against \(report.reference) failed: " + report.failures.joined(separator: "; ") + "; nothing written"
        }
    }
}
