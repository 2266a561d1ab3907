import ArapackFormats
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// What `arapack convert` does, as a library type: read the source (a release bundle is verified first), check
/// it against the family, cast or quantize, write the output into a temporary sibling, optionally run parity
/// and sign, then commit (with the archive, when asked: archive and sidecar on disk before the bundle moves
/// into place). Nothing exists at the destination unless everything succeeded.
public struct Conversion {
    /// What to write.
    public enum Output {
        /// A release bundle (native or GPT-2 layout, as the options say).
        case bundle(BundleOptions)
        /// A training-style torch.save checkpoint, or a single-rank DCP folder, in `dtype` (nil keeps the source's).
        case torch(dtype: DType?)
        case dcp(dtype: DType?)
        /// One GGUF file for llama.cpp (AR models with GELU and a tokenizer only).
        case gguf(GGUFOptions)
    }

    public var source: String
    /// DST; a trailing slash is ignored.
    public var destination: String
    public var output: Output
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

    public init(source: String, destination: String, output: Output) {
        self.source = source
        self.destination = trimmingTrailingSlashes(destination)
        self.output = output
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

    /// What `kind` of thing this conversion writes at DST.
    var destinationKind: DestinationGuard.Kind {
        switch output {
        case .bundle: return .bundleFolder
        case .dcp: return .dcpFolder
        case .torch: return .torchFile
        case .gguf: return .ggufFile
        }
    }

    /// Checks the outputs before anything is read: DST's folder exists; no output is, lies inside or contains an
    /// input; an existing DST (and archive) is refused without `force`, and with it unless arapack wrote it
    /// (`DestinationGuard`). Nothing is changed.
    public func checkOutputs() throws {
        let parent = splitPath(destination).0
        guard parent.isEmpty || pathExists(parent) else { throw ConversionError.noParentFolder(parent) }
        let archiveFiles = archive ? [archivePath, ReleaseArchive.sidecar(of: archivePath)] : []
        // A signed GGUF's signature goes beside it (a bundle's inside it).
        let signatureFile: [String]
        if signing != nil || signs, case .gguf = output { signatureFile = [destination + ".sig"] } else { signatureFile = [] }
        try DestinationGuard.checkApart(outputs: [destination] + archiveFiles + signatureFile, inputs: inputs)
        for path in signatureFile where pathExists(path) {
            guard force else { throw ConversionError.exists(path) }
            try DestinationGuard.checkReplaceable(path, as: .signature)
        }
        for path in [destination] + (archive ? [archivePath] : []) where pathExists(path) && !force {
            if path == destination && archive && !pathExists(archivePath) { throw ConversionError.archiveMissing(destination, archivePath) }
            throw ConversionError.exists(path)
        }
        guard force else { return }
        if pathExists(destination) { try DestinationGuard.checkReplaceable(destination, as: destinationKind) }
        for (path, kind) in zip(archiveFiles, [DestinationGuard.Kind.archive, .archiveSidecar]) where pathExists(path) {
            try DestinationGuard.checkReplaceable(path, as: kind)
        }
    }

    public func run(progress: Progress) throws -> Result {
        try checkOutputs()
        // Written where the names lead: a DST that is a link to a folder gets the new folder, the link stays.
        let dst = try NamedOutput.resolvingSymbolicLinks(destination)
        let archivePath = try NamedOutput.resolvingSymbolicLinks(self.archivePath)
        for path in [dst, archivePath, ReleaseArchive.sidecar(of: archivePath)] {
            for stale in TemporaryFiles.removeStale(of: path) { note("removed \(stale), left by an interrupted run") }
        }
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
        var warnings: [String] = []
        if model.tokenizer == nil, case .bundle = output {
            warnings.append("\(destination): the release carries no tokenizer (pass --tokenizer DIR): AutoTokenizer cannot load it, and its card says so")
        }
        switch output {
        case let .bundle(options):
            let releaseName = options.card.releaseName(model.config)
            let folder = try AtomicDirectory(destination: dst)
            var report: ParityReport?
            let manifest = try BundleWriter.write(model, tokenizer: model.tokenizer, options: options, into: folder.temporaryPath,
                                                  progress: progress, parity: parity.map { request in { directory in
                progress.begin("parity", total: 0)
                var run = try request.run(bundle: try ReleaseModel(path: directory), source: model)
                progress.end()
                run.bundle = destination
                report = run
                guard run.passed else { throw ConversionError.parityFailed(run) }
                return run.summary
            } })
            if let signing {
                let provenance = Provenance(manifest: manifest, manifestSHA256: manifest.sha256, options: signing.options, parity: manifest.parity)
                try ModelSignature.sign(folder: folder.temporaryPath, name: releaseName, key: signing.key,
                                        signaturePath: folder.path(ModelSignature.defaultFileName), provenance: provenance)
            }
            if archive {
                let epoch = getenv("SOURCE_DATE_EPOCH").flatMap { Int(String(cString: $0)) } ?? 0
                try ReleaseArchive.write(folder: folder.temporaryPath, files: try BundleFolder.files(folder.temporaryPath),
                                         name: releaseName, to: archivePath, mtime: epoch, replacing: force, progress: progress) {
                    try folder.commit(replacing: force)
                }
            } else {
                try folder.commit(replacing: force)
            }
            return Result(model: model, manifest: manifest, parity: report, warnings: warnings)
        case let .torch(dtype):
            try TrainingExport.writeTorch(model, dtype: dtype, to: dst, replacing: force)
        case let .gguf(options):
            // Written, checked and signed in a private folder beside DST, then moved into place with its signature.
            let staging = try AtomicDirectory(destination: dst)
            let staged = staging.path(splitPath(dst).1)
            let mismatch = try GGUFExport.write(model, options: options, to: staged, replacing: false, progress: progress)
            var report: ParityReport?
            if let parity {
                progress.begin("parity", total: 0)
                var run = try parity.run(bundle: try ReleaseModel(path: staged), source: model)
                progress.end()
                run.bundle = destination
                guard run.passed else { throw ConversionError.parityFailed(run) }
                report = run
            }
            if let signing {
                try ModelSignature.sign(folder: staged, name: splitPath(dst).1, key: signing.key, signaturePath: staged + ".sig", provenance: nil)
                try moveIntoPlace(staged + ".sig", to: ModelSignature.defaultSignaturePath(of: dst), replacing: force)
            }
            try moveIntoPlace(staged, to: dst, replacing: force)
            if let mismatch {
                warnings.append("\(destination): llama.cpp tokenizes text otherwise than the tokenizer (\(mismatch)); written as --allow-tokenizer-mismatch asked, and recorded in the file's \(GGUFExport.mismatchKey)")
            }
            if let morph = model.tokenizer?.morphBPEFiles, !morph.isEmpty {
                warnings.append("\(destination): the tokenizer's MorphBPE segmentation (\(morph.joined(separator: ", "))) does not travel into GGUF: llama.cpp applies the base BPE alone, so its ids differ from the published tokenizer's wherever MorphBPE splits words")
            }
            return Result(model: model, manifest: nil, parity: report, warnings: warnings)
        case let .dcp(dtype):
            let folder = try AtomicDirectory(destination: dst)
            try TrainingExport.writeDCP(model, dtype: dtype, into: folder.temporaryPath)
            try folder.commit(replacing: force)
        }
        return Result(model: model, manifest: nil, warnings: warnings)
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
