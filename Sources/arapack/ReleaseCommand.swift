import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `arapack release SRC DST [--plan FILE]`.
struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "release",
        abstract: "Write every form of a release (bundles, GPT-2, GGUF) from one read of the checkpoint into one folder.",
        discussion: """
            The artifacts come from --artifact flags or from a plan file (--plan, TOML) kept in the training \
            repository; every key is one of convert's flags without its dashes, '-' spelled '_':

                source = "checkpoints/step-191000"     # SRC on the command line overrides it
                repo_id = "AraFus/AraFusion-AR-381M"
                tokenizer = "tokenizer"
                parity = true
                [[artifact]]
                to = "bundle"
                dtype = "bf16"
                archive = true
                [[artifact]]
                to = "gguf"
                dtype = "q8_0"

            Keys before the first [[artifact]] apply to every artifact; source, config, tokenizer, allow_untied, \
            tokens, token_dtype and seq_len belong to the whole release (the model is read once). Flags add to the \
            plan and override its keys. Each artifact is what `arapack convert SRC DST/NAME` with those flags writes, \
            byte for byte; an unknown key, a value convert refuses or a combination it refuses is a usage error \
            (exit 64) naming the line, before anything is read. Without artifacts: the native bundle in the \
            source's dtype. --print-plan prints the plan the flags and the file make, and stops.

            Names come from --repo-id's NAME (else the model's family and size, e.g. AraFusion-AR-381M): the native \
            bundle in a floating dtype is NAME (NAME-bf16, NAME-f16, … when there are several), quantized bundles \
            NAME-int8 and NAME-int4, the GPT-2 form NAME-gpt2, GGUF files NAME-GGUF/NAME-Q8_0.gguf. DST/release.json \
            lists every artifact: form, dtype, files with their bytes and SHA-256, parity figures \
            (Schemas/release.schema.json). With --sign (or a plan's sign = KEY), every artifact is signed as convert signs \
            it, and release.json too: DST/release.json.sig.

            The source is read, checked and hashed once for all artifacts. DST appears only when every artifact is \
            written and has passed its parity run: a failure (parity over its limit, a refused tokenizer, a full \
            disk, an interrupt) leaves nothing at DST and names the artifact. DST must not exist.

            Exit status: 0 written; 1 an artifact's parity failed (nothing written); 2 the source could not be read \
            or DST exists; 64 usage error; 130/143 interrupted (nothing at DST).
            """
    )

    @Argument(help: "SRC DST, or DST alone when the plan names its source.")
    var paths: [String] = []

    @Option(help: "A release plan (TOML; see above).")
    var plan: String?

    @Option(help: "An artifact, as KEY=VALUE pairs separated by commas (keys as in a plan's [[artifact]]; a key alone is true), e.g. 'to=gguf,dtype=q8_0' or 'dtype=bf16,archive' (repeatable; added after the plan's).")
    var artifact: [String] = []

    @Option(help: "The Hub repository the release is published as (OWNER/NAME): the artifacts' names, and each card's title.")
    var repoID: String?

    @Option(help: "A folder with tokenizer.json to check and copy into every bundle and GGUF file.")
    var tokenizer: String?

    @Option(help: "A config adding to or checking the source's (as convert --config).")
    var config: String?

    @Option(help: "Token shards (as eval --tokens) for every artifact's parity run: real data in each verdict and card.")
    var tokens: String?

    @Option(help: "Sign every artifact (as convert --sign) and release.json (DST/release.json.sig, the same OpenSSF model-signing form as a GGUF file's) with this EC P-256 private key.")
    var sign: String?

    @Option(help: "A file holding the password of an encrypted --sign key (its first line is the password).")
    var keyPasswordFile: String?

    @Flag(help: "Run each artifact's parity against SRC before DST appears (as convert --parity).")
    var parity = false

    @Flag(help: "Print the plan that the flags and the plan file make (TOML), and stop.")
    var printPlan = false

    @Flag(help: "No progress line; one line per artifact and the line that says what was written.")
    var quiet = false

    /// The plan: the file's, then the flags' settings (overriding its keys) and artifacts (after its own).
    func makePlan() throws -> ReleasePlan {
        var plan = try plan.map { try ReleasePlan.read($0) } ?? ReleasePlan(origin: "the flags", settings: [], artifacts: [])
        var flags: [ReleasePlan.Setting] = []
        if paths.count == 2 { flags.append(.init(key: "source", value: .string(paths[0]))) }
        for (key, value) in [("repo_id", repoID), ("tokenizer", tokenizer), ("config", config), ("tokens", tokens), ("sign", sign),
                             ("key_password_file", keyPasswordFile)] {
            if let value { flags.append(.init(key: key, value: .string(value))) }
        }
        if parity { flags.append(.init(key: "parity", value: .boolean(true))) }
        for setting in flags {
            plan.settings.removeAll { $0.key == setting.key }
            plan.settings.append(setting)
        }
        for spec in artifact { plan.artifacts.append(try Self.artifact(spec)) }
        if plan.artifacts.isEmpty { plan.artifacts = [ReleasePlan.Artifact(settings: [.init(key: "to", value: .string(NativeBundle().name))])] }
        return plan
    }

    /// `--artifact`'s KEY=VALUE,… (a key alone is true; integers stay integers).
    static func artifact(_ spec: String) throws -> ReleasePlan.Artifact {
        var settings: [ReleasePlan.Setting] = []
        for pair in spec.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0]
            guard !settings.contains(where: { $0.key == key }) else { throw UsageError("--artifact \(spec): \(key) is set twice") }
            let value: ReleasePlan.Value = parts.count == 1 ? .boolean(true)
                : Int(parts[1]).map { .integer($0) } ?? (parts[1] == "true" || parts[1] == "false" ? .boolean(parts[1] == "true") : .string(parts[1]))
            settings.append(.init(key: key, value: value))
        }
        guard !settings.isEmpty else { throw UsageError("--artifact needs KEY=VALUE pairs, e.g. to=gguf,dtype=q8_0") }
        return ReleasePlan.Artifact(settings: settings)
    }

    /// What a plan key becomes among convert's arguments.
    static func arguments(_ settings: [ReleasePlan.Setting]) -> [String] {
        settings.flatMap { s -> [String] in
            let flag = "--" + s.key.replacingUnderscores
            switch s.value {
            case let .string(v): return [flag, v]
            case let .integer(v): return [flag, String(v)]
            case let .float(v): return [flag, v]
            case let .boolean(v): return v ? [flag] : []
            case let .strings(vs): return vs.flatMap { [flag, $0] }
            }
        }
    }

    /// Keys that, set for the whole release, apply to its bundles (convert takes them for bundles only).
    static let bundleKeys: Set<String> = ["repo_id", "license", "base_model", "model_card", "archive", "max_shard_size", "no_source_digest", "training_log"]

    /// Keys a release decides itself.
    static let refusedKeys: [String: String] = [
        "force": "a release's DST must not exist", "json": "release prints its own summary", "quiet": "pass --quiet to release",
        "details": "each artifact's manifest.json keeps its report",
    ]

    /// Each artifact as the convert command it is (its arguments checked as convert checks them), writing at NAME under
    /// `root`; a refusal names the plan's line.
    func conversions(_ plan: ReleasePlan, source: String) throws -> [ConvertCommand] {
        let shared = plan.settings.filter { $0.key != "source" }
        return try plan.artifacts.enumerated().map { index, a in
            let what = plan.artifacts.count > 1 ? "artifact \(index + 1): " : ""
            for s in shared + a.settings {
                if let why = Self.refusedKeys[s.key] { throw PlanError(file: plan.origin, line: s.line, problem: "\(what)\(s.key) is not a release key: \(why)") }
            }
            for s in a.settings where ReleasePlan.releaseKeys.contains(s.key) {
                throw PlanError(file: plan.origin, line: s.line, problem: "\(what)\(s.key) belongs to the whole release (the model is read once): set it before the first [[artifact]]")
            }
            // The release's bundle settings (its name, license, archives, shards) go to its bundles only.
            let to = a.value("to") ?? plan.value("to") ?? .string(NativeBundle().name)
            if case let .string(name) = to, let form = ReleaseForms.named(name), !(form is any ReleaseForm) {
                let line = (a.settings + plan.settings).first { $0.key == "to" }?.line ?? a.line
                let forms = ReleaseForms.releases.map(\.name)
                throw PlanError(file: plan.origin, line: line, problem: "\(what)to = \"\(name)\": a release holds "
                                + forms.dropLast().joined(separator: ", ") + " and \(forms.last!) artifacts (convert writes the \(form.title))")
            }
            let isBundle = { if case let .string(name) = to { return ReleaseForms.named(name) is any BundleForm }; return false }()
            let settings = shared.filter { s in !a.settings.contains { $0.key == s.key } && (isBundle || !Self.bundleKeys.contains(s.key)) } + a.settings
            do {
                return try ConvertCommand.parse([source, "DST"] + Self.arguments(settings))
            } catch {
                let raw = ConvertCommand.message(for: error)
                let message = raw.split(separator: "\n").map { line -> String in
                    let item = String(line).trimming(" ")
                    return item.hasPrefix("- ") ? String(item.dropFirst(2)) : item
                }.joined(separator: " ")
                let blamed = settings.last { raw.contains("--" + $0.key.replacingUnderscores) } ?? a.settings.first
                throw PlanError(file: plan.origin, line: blamed?.line ?? a.line, problem: what + message)
            }
        }
    }

    func validate() throws {
        if paths.count > 2 { throw ValidationError("release takes SRC DST (or DST alone with a plan that names its source)") }
        if paths.isEmpty && !printPlan { throw ValidationError("release needs DST (and SRC unless the plan names its source)") }
    }

    func run() throws {
        let progress = Progress(enabled: !quiet && Progress.standardErrorIsTerminal)
        try runReportingErrors("release") {
            let plan: ReleasePlan
            let commands: [ConvertCommand]
            do {
                plan = try makePlan()
                if printPlan {
                    print(plan.toml, terminator: "")
                    return
                }
                guard case let .string(source)? = plan.value("source") else {
                    throw PlanError(file: plan.origin, line: 0, problem: "no source: pass SRC DST, or set source = \"…\" in the plan")
                }
                commands = try conversions(plan, source: source)
                // Two artifacts with one name are refused before anything is read.
                let names = ReleaseNaming.names(base: "NAME", artifacts: commands.map { ($0.target.name, $0.dtype?.name) }, sourceDType: "source")
                if let twice = names.indices.first(where: { i in names[..<i].contains(names[i]) }) {
                    let first = names.firstIndex(of: names[twice])!
                    throw PlanError(file: plan.origin, line: plan.artifacts[twice].line,
                                    problem: "artifacts \(first + 1) and \(twice + 1) would both be written as \(names[twice]): give them different forms or dtypes")
                }
            } catch let e as PlanError {
                throw UsageError("\(e)")
            }
            let destination = paths.last!
            let source = commands[0].source
            try writeRelease(commands, source: source, destination: destination, progress: progress)
        }
    }

    /// Reads the source once, writes every artifact into a private folder beside DST, then moves it into place.
    func writeRelease(_ commands: [ConvertCommand], source: String, destination: String, progress: Progress) throws {
        let parent = splitPath(destination).0
        guard parent.isEmpty || pathExists(parent) else { throw ConversionError.noParentFolder(parent) }
        guard !pathExists(destination) else { throw ConversionError.exists(destination) }
        let settings = commands[0]
        let keys = commands.flatMap { [$0.sign, $0.signingKey.keyPasswordFile] }.compactMap { $0 }
        try DestinationGuard.checkApart(outputs: [destination], inputs: [source] + keys
                                        + [settings.tokenizer, settings.config, settings.parityOptions.tokens].compactMap { $0 })
        let folder = try AtomicDirectory(destination: destination)
        // The model is read (and checked) once, with the release's source, config and tokenizer.
        var reading = Conversion(source: source, destination: destination, form: settings.target.form, options: settings.outputOptions)
        (reading.configFile, reading.tokenizer, reading.allowUntied) = (settings.config, settings.tokenizer, settings.allowUntied)
        reading.note = { printError("arapack release: note: " + $0) }
        let model = try reading.readModel(progress: progress)
        // One reference: the source's logits on the parity sequences are computed for the first artifact and kept.
        model.keepLogits()
        let names = ReleaseNaming.names(base: baseName(commands[0], model), artifacts: commands.map { ($0.target.name, $0.dtype?.name) },
                                        sourceDType: model.dominantDType.name.lowercased())
        if let twice = names.indices.first(where: { i in names[..<i].contains(names[i]) }) {
            throw UsageError("two artifacts would both be written as \(names[twice]) (the source is \(model.dominantDType.name.lowercased())): give them different dtypes")
        }
        // What any form would refuse (its rules, a group size, a tokenizer llama.cpp reads otherwise) stops the release
        // before the first artifact is written.
        for (command, name) in zip(commands, names) {
            do {
                let form = command.target.form
                try form.check(model, for: Conversion(source: source, destination: folder.path(name), form: form, options: command.outputOptions))
            } catch {
                throw ReleaseFailure(artifact: name, error: error)
            }
        }
        // Each artifact as convert writes it; a bundle's archive and signature wait for its card's table of forms.
        struct Written { let name: String; let command: ConvertCommand; let conversion: Conversion; let parity: ParitySummary? }
        var written: [Written] = []
        // Each artifact's line is printed once DST holds it: a later failure leaves no line for an artifact that
        // never lands.
        var lines: [String] = []
        // Each form's weights for its parity pass take the mappings the previous form's freed (same shapes, or half
        // their size): zeroing reused pages costs a tenth of fresh ones on a VM.
        try ZeroedMemory.reusingFreedMappings {
            for (index, (command, name)) in zip(commands, names).enumerated() {
                progress.context = "\(index + 1)/\(commands.count) \(name)"
                progress.overall = (index, commands.count + 1)
                let path = folder.path(name)
                if name.contains("/"), !pathExists(splitPath(path).0) {
                    guard mkdir(splitPath(path).0, 0o755) == 0 else { throw FileError(path: splitPath(path).0, operation: "mkdir", code: errno) }
                }
                var conversion = try command.makeConversion(destination: path)
                conversion.note = { printError("arapack release: \(name): note: " + $0) }
                let deferred = conversion
                if command.target.isBundle { (conversion.archive, conversion.signing) = (false, nil) }
                let result: Conversion.Result
                do {
                    result = try conversion.write(model, at: path, progress: progress)
                } catch let ConversionError.parityFailed(report) {
                    print(report.text)
                    printError("arapack release: \(name): parity against \(source) failed: \(report.failures.joined(separator: "; ")); nothing written")
                    throw ExitStatus.verificationFailed
                } catch let e as ParityRequest.Problem {
                    throw e
                } catch {
                    throw ReleaseFailure(artifact: name, error: error)
                }
                for warning in result.warnings { printError("arapack release: warning: " + warning.replacing(folder.temporaryPath, with: destination)) }
                written.append(Written(name: name, command: command, conversion: deferred, parity: result.parity?.summary))
                lines.append("\(name): \(command.target.name)" + (command.dtype.map { " " + $0.name } ?? "") + (result.parity.map { ", " + $0.verdict } ?? ""))
            }
        }
        // Every bundle's card gains the table of forms; then its signature and archive, as convert makes them.
        let card = ReleaseSetCard(rows: try written.map {
            ReleaseSetCard.Row(name: $0.name, form: $0.command.target.name, dtype: dtypeName($0.command, model),
                               weightBytes: try ReleaseSetCard.weightBytes(of: folder.path($0.name)), parity: $0.parity)
        }, owner: commands[0].repoID.map { String($0.split(separator: "/")[0]) })
        var known: [String: String] = [:]
        progress.overall = (commands.count, commands.count + 1)
        for w in written where w.command.target.isBundle {
            progress.context = "\(w.name): card, signature, archive"
            let path = folder.path(w.name)
            do {
                try card.apply(to: path, current: w.name)
                let releaseName = w.conversion.options.card.releaseName(model.config)
                if let signing = w.conversion.signing {
                    let manifest = try Manifest(path: path + "/" + Manifest.fileName)
                    let provenance = Provenance(manifest: manifest, manifestSHA256: manifest.sha256, options: signing.options, parity: manifest.parity)
                    _ = try ModelSignature.sign(folder: path, name: releaseName, key: signing.key, signaturePath: path + "/" + ModelSignature.defaultFileName,
                                                provenance: provenance)
                }
                if w.conversion.archive {
                    let epoch = getenv("SOURCE_DATE_EPOCH").flatMap { Int(String(cString: $0)) } ?? 0
                    known[w.name + ".tar.zst"] = try ReleaseArchive.write(folder: path, files: try BundleFolder.files(path), name: releaseName,
                                                                          to: w.conversion.archivePath, mtime: epoch, replacing: false, progress: progress)
                }
            } catch {
                throw ReleaseFailure(artifact: w.name, error: error)
            }
        }
        progress.context = nil
        progress.overall = nil
        let artifacts = try written.map { w -> ReleaseIndex.Artifact in
            let digests = known.merging(try ReleaseIndex.manifestDigests(of: w.name, under: folder.temporaryPath)) { a, _ in a }
            let files = try ReleaseIndex.files(of: w.name, under: folder.temporaryPath, known: digests)
            return ReleaseIndex.Artifact(name: w.name, form: w.command.target.name, dtype: dtypeName(w.command, model), files: files,
                                         bytes: files.reduce(0) { $0 + $1.size }, parity: w.parity)
        }
        let digest = commands.contains { $0.noSourceDigest } ? nil : try model.sourceSHA256()
        let index = ReleaseIndex(model: model, sourceSHA256: digest, artifacts: artifacts)
        try writeText(index.text, to: folder.path(ReleaseIndex.fileName))
        // release.json is signed when every artifact is, with one key: the set's signature covers the list of them.
        if let signing = written.first?.conversion.signing, Set(written.map { $0.command.sign }).count == 1 {
            progress.context = "\(ReleaseIndex.fileName): signature"
            try ModelSignature.sign(folder: folder.path(ReleaseIndex.fileName), name: ReleaseIndex.fileName, key: signing.key,
                                    signaturePath: folder.path(ReleaseIndex.signatureFileName), provenance: nil)
            progress.context = nil
        }
        try folder.commit(replacing: false)
        for line in lines { print(line) }
        print("wrote \(destination): \(artifacts.count) artifact(s), \(grouped(artifacts.reduce(0) { $0 + $1.bytes })) bytes, \(ReleaseIndex.fileName)")
    }

    /// The dtype release.json and the cards name for an artifact: its --dtype (torch's names for the floating ones),
    /// else the source's.
    func dtypeName(_ command: ConvertCommand, _ model: ReleaseModel) -> String {
        command.dtype.map { Self.dtypeNames[$0.name] ?? $0.name } ?? model.weightTypeName
    }

    /// release.json's names of the floating `--dtype` values (the others are their own).
    static let dtypeNames = ["f32": "float32", "bf16": "bfloat16", "f16": "float16"]

    /// NAME: the repository's name, else the model's family and size.
    func baseName(_ command: ConvertCommand, _ model: ReleaseModel) -> String {
        command.outputOptions.card.releaseName(model.config)
    }
}

/// An artifact that could not be written: which one, and why (exit 2).
struct ReleaseFailure: Error, CustomStringConvertible {
    let artifact: String
    let error: Error
    var description: String { "\(artifact): \(error)" }
}

extension String {
    /// A plan key as convert's flag spells it (`int8_group_size` → `int8-group-size`).
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}
