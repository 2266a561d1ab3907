import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `arapack convert SRC DST`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a training checkpoint into a release bundle, or a bundle back into a checkpoint.",
        discussion: """
            SRC is any format arapack reads, detected from its content: a torch.save checkpoint (bare state dict \
            or a training dict holding it under model, model_state_dict, state_dict or module; DDP, torch.compile, \
            FSDP and activation-checkpointing wrappers are stripped), a DCP folder, a .safetensors file or sharded \
            index, a release bundle folder, or a bundle archive (.tar.zst, unpacked to a private folder under \
            TMPDIR while it is read).

            The tensors are checked against the AraFusion family: every tensor present with the shape the config \
            implies, nothing unexpected, the config (from the checkpoint, --config and the shapes) consistent, the \
            LM head equal to the embedding (same storage or same bits). An LM head that differs is refused unless \
            --allow-untied.

            --to bundle (default) writes model.safetensors (sharded past --max-shard-size), config.json, \
            generation_config.json, training_metadata.json, the transformers wrapper (configuration_arafusion.py, \
            modeling_arafusion.py; config.json's auto_map points at them: load with trust_remote_code=True), a model \
            card (README.md: --license, --base-model, or your own with --model-card) and .gitattributes, the \
            tokenizer files from --tokenizer and manifest.json with the SHA-256 of every file. The tokenizer goes \
            both at the top and in base_tokenizer/ (AutoTokenizer loads either); a folder in the published layout \
            (base_tokenizer/ plus morphbpe* files at its top) keeps that layout, and a source bundle's own \
            tokenizer is kept unless --tokenizer names another. The optimizer state never enters a bundle. --archive also writes \
            DST.tar.zst and DST.tar.zst.sha256 (deterministic; mtime from SOURCE_DATE_EPOCH, else 0).
            --to gpt2 (AR models only) writes the same bundle in transformers' stock GPT-2 layout: config.json is a \
            GPT2Config (every dropout 0) and the tensors carry GPT2LMHeadModel's names, linear weights stored \
            transposed as GPT-2's Conv1D keeps them ([in, out]), the tied matrix stored once, plus a model card \
            and .gitattributes, but no wrapper; AutoModelForCausalLM.from_pretrained(DST) loads it with no \
            remote code. int8 and int4 are not written in this layout. arapack reads GPT-2 bundles everywhere it reads bundles.
            --to torch writes {"model": state_dict, "config": {...}, "step": n, ...} with the tied pair sharing one \
            storage; --to dcp writes a single-rank torch.distributed.checkpoint folder.

            DST appears only complete: everything is written to a temporary sibling and renamed into place; a \
            failed or interrupted run leaves nothing at DST (a killed run's temporaries are removed by the next run). An existing DST is refused unless --force, which \
            replaces it only once the new one is complete, and only when arapack wrote it: an empty folder, a bundle \
            folder holding only what its manifest.json lists (and model.sig), a DCP folder of .metadata and .distcp \
            files, a GGUF file for --to gguf, a torch.save checkpoint for --to torch, arapack's archive and its .sha256. \
            Anything else is refused and left untouched. DST (and its archive) may never be SRC, lie inside it or hold \
            it, nor any other input (--tokenizer, --config, --model-card, the key): that is refused before anything is \
            read, with or without --force. A DST that is a symbolic link is written through (the link stays). Same \
            input and options give byte-identical output.

            Exit status: 0 written; 1 --parity failed (nothing written); 2 the source could not be read, or DST exists \
            (without --force) or is not arapack's to replace; 64 usage error; 130/143 interrupted (nothing at DST).
            """
    )

    /// What `--to` names: one of `ReleaseForms.all`.
    struct Target: ExpressibleByArgument {
        let form: any OutputForm
        init?(argument: String) {
            guard let form = ReleaseForms.named(argument) else { return nil }
            self.form = form
        }
        var name: String { form.name }
        var defaultValueDescription: String { name }
        /// The values `--help` and a refused value list.
        static var allValueStrings: [String] { ReleaseForms.all.map(\.name) }
        /// The bundle form written, for the bundle targets.
        var bundleForm: (any BundleForm)? { form as? any BundleForm }
        var isBundle: Bool { bundleForm != nil }
        var isRelease: Bool { form is any ReleaseForm }
        /// `--to`'s help: each form and its summary.
        static let help = "What to write: " + ReleaseForms.all.map { "\($0.name) (\($0.summary))" }.joined(separator: ", ") + "."
    }

    /// What `--dtype` names: a dtype some form stores (`ReleaseForms.dtypeNames`).
    struct DTypeName: ExpressibleByArgument {
        let name: String
        init?(argument: String) {
            guard ReleaseForms.dtypeNames.contains(argument) else { return nil }
            name = argument
        }
        var defaultValueDescription: String { name }
        static var allValueStrings: [String] { ReleaseForms.dtypeNames }
    }

    @Argument(help: "The checkpoint, DCP folder, safetensors file or bundle to convert.")
    var source: String

    @Argument(help: "Where to write the result (a folder for bundle and dcp, a file for torch).")
    var destination: String

    @Option(name: .customLong("to"), help: ArgumentHelp(Target.help))
    var target = Target(argument: "bundle")!

    @Option(help: "Cast the floating weights to f32, bf16 or f16, or quantize the weights of the layers' nn.Linear modules (out_proj, linear1, linear2) to int8 (symmetric, per output channel, compressed-tensors layout X I8 + X_scale F32) or int4 (W4A16: symmetric, groups of 128 columns, compressed-tensors' pack-quantized layout X_packed I32 + X_scale F32 + X_shape I64), both loadable by transformers + compressed-tensors; the tied embedding and the attention input projections (in_proj), which compressed-tensors cannot load quantized, are stored as bf16; vectors and the position table stay f32. With --to gguf: f32, bf16, f16, q8_0 (blocks of 32 int8 with a float16 scale), q6_k, q5_k, q5_0, q4_k, q4_0 (llama.cpp's block types, one for every matrix, as llama-quantize --pure makes them) or q5_k_m, q4_k_m (llama.cpp's mixes, more bits where llama-quantize puts them), each tensor's bytes what llama-quantize makes of the f32 file; vectors and positions f32. Default: keep the source's dtype.")
    var dtype: DTypeName?

    @Option(help: "With --dtype int8: one scale per this many columns instead of one per row (0 = per channel).")
    var int8GroupSize = 0

    @Option(help: "With --dtype int4: one scale per this many columns (default \(LinearQuantization.int4GroupSize); it must divide every row; 0 = one scale per row).")
    var int4GroupSize: Int?

    @Option(help: "With --dtype int8 or int4: keep the weights whose release name matches this glob in float32 (repeatable), e.g. '\(ModelFamily.releasePrefix + ModelFamily.embedding)' or '\(ModelFamily.releasePrefix + ModelFamily.layerPrefix)0.*'.")
    var keep: [String] = []

    @Option(help: "A config adding to or checking the source's: a JSON file, or the JSON itself (e.g. '{\"n_heads\": 16}'), in training names like d_model or config.json names.")
    var config: String?

    @Option(help: "A folder with tokenizer.json (and tokenizer_config.json, special_tokens_map.json) to check and copy.")
    var tokenizer: String?

    @Flag(help: "With --to gguf: write the file although llama.cpp's tokenizer would give other ids than the tokenizer's (the reason is recorded in the file's arapack.tokenizer_mismatch and printed by inspect).")
    var allowTokenizerMismatch = false

    @Option(help: "Shard model.safetensors when its tensors exceed this size (bytes, or with kB/MB/GB/KiB/MiB/GiB).")
    var maxShardSize: String?

    @Flag(help: "Do not hash the source for the manifest (its source.sha256 is then null); saves reading the whole source, optimizer state included.")
    var noSourceDigest = false

    @Flag(help: "Also write DST.tar.zst and DST.tar.zst.sha256 (bundles only).")
    var archive = false

    @Flag(help: "Release a model whose LM head differs from its embedding, untied (tie_word_embeddings false).")
    var allowUntied = false

    @Flag(help: "Before moving the release (bundle or GGUF) into place, run verify --parity against SRC (see arapack verify --help); a failure leaves nothing at DST (exit 1).")
    var parity = false

    @OptionGroup var parityOptions: ParityOptions

    @Option(help: "Bundles: the Hub repository the release is published as (OWNER/NAME): the card's title and the repository its quick start loads, the archive's top folder and the signature's subject. Without it they are the model's family and size (e.g. AraFusion-AR-381M), never DST's name: a release's bytes depend only on the source, the options and arapack's version.")
    var repoID: String?

    @Option(help: "Bundles: the license id in the model card's front matter (default apache-2.0).")
    var license: String?

    @Option(help: "Bundles: the Hub id of the model this one derives from, for the card's base_model (e.g. owner/name).")
    var baseModel: String?

    @Option(help: "Bundles: use this README.md as the model card instead of the generated one (its YAML front matter is checked; it must state a license).")
    var modelCard: String?

    @Option(help: "Bundles: the training run's metrics as WandB exports them (CSV with a header row, or JSON lines): step (_step or step), training loss (train/loss, train_loss or loss), validation loss (val/loss, val_loss or eval/loss), learning rate (lr or learning_rate) and, when logged, tokens seen (tokens or tokens_seen). The bundle gains training_loss.svg, validation_loss.svg, training_validation_loss.svg and learning_rate.svg, shown in the card; rows without a value are skipped, steps must increase, a long log is sampled to 2,048 points a curve.")
    var trainingLog: String?

    @Option(help: "Sign the release (OpenSSF model signing, see arapack sign --help) with this EC P-256 private key before it moves into place: a bundle's DST/model.sig, with the conversion's options and parity result in the signed provenance; a GGUF's DST.sig beside it.")
    var sign: String?

    @OptionGroup var signingKey: SigningKeyOptions

    @Flag(help: "Replace an existing DST, once the new one is complete, and only when arapack wrote it (see above); anything else is refused and left untouched.")
    var force = false

    @Flag(help: "Print what was written as one JSON document (Schemas/convert-result.schema.json) instead of the text: the model, the files, the parity report, the quantization report and the warnings.")
    var json = false

    @Flag(help: "Also print the quantization report of every tensor (max |error|, SNR, bytes), not only its one-line summary.")
    var details = false

    @Flag(help: "No progress line, quantization summary or parity details: only the parity verdict (one line) and the line that says what was written. Warnings and errors still go to standard error; the manifest and the card keep both reports.")
    var quiet = false

    func validate() throws {
        if archive && !target.isBundle { throw ValidationError("--archive applies to bundles only (--to bundle or gpt2)") }
        if maxShardSize != nil && !target.isBundle { throw ValidationError("--max-shard-size applies to bundles only") }
        if parity && !target.isRelease { throw ValidationError("--parity applies to releases (\(releaseTargets))") }
        if let d = dtype?.name, !target.form.dtypes.contains(d) { throw ValidationError(target.form.dtypeRefusal(d)) }
        if allowTokenizerMismatch && !(target.form is GGUFRelease) { throw ValidationError("--allow-tokenizer-mismatch applies to --to gguf") }
        if sign != nil && !target.isRelease { throw ValidationError("--sign applies to releases (\(releaseTargets))") }
        if signingKey.keyPasswordFile != nil && sign == nil { throw ValidationError("--key-password-file applies to --sign") }
        if trainingLog != nil && !target.isBundle { throw ValidationError("--training-log applies to bundles (--to bundle or gpt2), whose card shows the plots") }
        if (license != nil || baseModel != nil || modelCard != nil) && !target.isBundle {
            throw ValidationError("--license, --base-model and --model-card apply to bundles (--to bundle or gpt2), which carry a model card")
        }
        if modelCard != nil && (license != nil || baseModel != nil) {
            throw ValidationError("--model-card is used as written: state the license and base_model in its front matter, not with --license or --base-model")
        }
        if repoID != nil && !target.isBundle { throw ValidationError("--repo-id applies to bundles only (--to bundle or gpt2)") }
        if let repoID, !ModelCard.isValidModelID(repoID) {
            throw ValidationError("--repo-id: \"\(repoID.escapingControlCharacters)\" is not a Hub repository id (owner/name: letters, digits, '-', '_', '.')")
        }
        if let baseModel, !ModelCard.isValidModelID(baseModel) {
            throw ValidationError("--base-model: \"\(baseModel.escapingControlCharacters)\" is not a Hub model id (owner/name: letters, digits, '-', '_', '.')")
        }
        if let license, !ModelCard.isValidLicense(license) {
            throw ValidationError("--license: \"\(license)\" is not a license id (letters, digits, '.', '-', '+'; e.g. apache-2.0, mit)")
        }
        if int8GroupSize != 0 && dtype?.name != "int8" { throw ValidationError("--int8-group-size applies to --dtype int8") }
        if int4GroupSize != nil && dtype?.name != "int4" { throw ValidationError("--int4-group-size applies to --dtype int4") }
        if !keep.isEmpty && LinearQuantization.Scheme(rawValue: dtype?.name ?? "") == nil { throw ValidationError("--keep applies to --dtype int8 and int4") }
        if int8GroupSize < 0 { throw ValidationError("--int8-group-size must be 0 (per channel) or positive") }
        if let g = int4GroupSize, g < 0 || g % 8 != 0 {
            throw ValidationError("--int4-group-size must be 0 (per channel) or a positive multiple of 8 (int4 packs 8 columns in each int32 word)")
        }
        if let s = maxShardSize, parseSize(s) == nil { throw ValidationError("--max-shard-size: cannot read \"\(s)\" as a size") }
    }

    func run() throws {
        let progress = Progress(enabled: !quiet && Progress.standardErrorIsTerminal)
        try runReportingErrors("convert") {
            let conversion = try makeConversion(destination: destination)
            let dst = conversion.destination
            let result: Conversion.Result
            do {
                result = try conversion.run(progress: progress)
            } catch let ConversionError.parityFailed(report) {
                if json {
                    print(ConvertResult(written: false, destination: dst, form: target.name, model: nil, archive: nil, signature: nil,
                                        parity: report, quantization: nil, warnings: []).text)
                } else {
                    print(quiet ? report.verdict : report.text)
                }
                printError("arapack convert: \(ConversionError.parityFailed(report))")
                throw ExitStatus.verificationFailed
            }
            if json {
                let signature = sign.map { _ in target.isBundle ? dst + "/" + ModelSignature.defaultFileName : dst + ".sig" }
                print(ConvertResult(written: true, destination: dst, form: target.name, model: result.model.config, archive: archive ? conversion.archivePath : nil,
                                    signature: signature, parity: result.parity, quantization: result.manifest?.quantization, warnings: result.warnings).text)
                for warning in result.warnings { printError("arapack convert: warning: " + warning) }
                return
            }
            if let report = result.parity { print(quiet ? report.verdict : report.text) }
            if !quiet, let report = result.manifest?.quantization {
                print(details ? quantizationTable(report.tensors) : quantizationSummary(report))
            }
            let c = result.model.config
            print("wrote \(dst) (\(target.name)): \(c.modelType), \(c.layers) layers, d \(c.hiddenSize), vocab \(grouped(c.vocabSize)), " +
                  "\(grouped(c.parameterCount)) parameters, \(result.model.tied ? "tied" : "untied")" + (archive ? "; archive \(conversion.archivePath)" : ""))
            for warning in result.warnings { printError("arapack convert: warning: " + warning) }
        }
    }

    /// The conversion the flags ask for, writing at `destination`, its outputs checked before any input is read; then
    /// the model card and the signing key are read.
    func makeConversion(destination: String) throws -> Conversion {
        var conversion = Conversion(source: source, destination: destination, form: target.form, options: outputOptions)
        conversion.configFile = config
        conversion.tokenizer = tokenizer
        conversion.allowUntied = allowUntied
        conversion.archive = archive
        conversion.force = force
        conversion.signs = sign != nil
        conversion.otherInputs = [modelCard, sign, signingKey.keyPasswordFile, trainingLog, parity ? parityOptions.probeIds : nil, parity ? parityOptions.tokens : nil].compactMap { $0 }
        conversion.note = { printError("arapack convert: note: " + $0) }
        // The destination is checked before any input is read (the model card and the key included).
        try conversion.checkOutputs()
        if let modelCard { conversion.options.card.userCard = try ModelCard(userCardAt: modelCard) }
        if let trainingLog { conversion.options.card.trainingLog = try TrainingLog(path: trainingLog) }
        conversion.signing = try sign.map { (try signingKey.load($0), signedOptions) }
        conversion.parity = parity ? parityOptions.request : nil
        return conversion
    }

    /// What the flags ask of the output (a user's model card is read and added once the destination is checked).
    var outputOptions: OutputOptions {
        var options = OutputOptions(dtype: dtype?.name)
        options.maxShardSize = maxShardSize.flatMap(parseSize)
        options.sourceDigest = !noSourceDigest
        options.groupSize = dtype?.name == "int4" ? int4GroupSize : int8GroupSize
        options.keep = keep
        options.card = ModelCard.Options(repoID: repoID, license: license ?? ModelCard.defaultLicense, baseModel: baseModel, userCard: nil)
        options.allowTokenizerMismatch = allowTokenizerMismatch
        return options
    }

    /// The `--to` values of the release forms, for the errors of the options only releases take.
    var releaseTargets: String {
        let names = ReleaseForms.releases.map(\.name)
        return "--to " + names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
}

extension ConvertCommand {
    /// The options that shaped the bundle, as the signed provenance records them (file names only, no paths).
    var signedOptions: Provenance.Options {
        Provenance.Options(to: target.name, dtype: dtype?.name, int8GroupSize: dtype?.name == "int8" ? int8GroupSize : nil,
                           int4GroupSize: dtype?.name == "int4" ? int4GroupSize ?? LinearQuantization.int4GroupSize : nil, keep: keep,
                           maxShardSize: maxShardSize.flatMap(parseSize), config: config.map { splitPath($0).1 },
                           tokenizer: tokenizer.map { splitPath(trimmingTrailingSlashes($0)).1 }, allowUntied: allowUntied,
                           sourceDigest: !noSourceDigest, license: license, repoID: repoID, baseModel: baseModel,
                           modelCard: modelCard.map { splitPath($0).1 })
    }
}

/// The per-tensor quantization report as a table (`--details`): numbers in short scientific form, bytes grouped.
func quantizationTable(_ rows: [QuantizationRecord]) -> String {
    let header = ["tensor", "max |error|", "SNR dB", "bytes before", "bytes after"]
    let cells = rows.map { r in
        [r.name, shortNumber(r.maxAbsError), r.snrDB.isFinite ? shortNumber(r.snrDB) : "inf", grouped(r.bytesBefore), grouped(r.bytesAfter)]
    }
    return alignColumns([header] + cells, rightAligned: [1, 2, 3, 4]).joined(separator: "\n")
}

/// The quantization report in one line: how many tensors, the worst one (lowest SNR), the mean error, the bytes.
func quantizationSummary(_ report: QuantizationReport) -> String {
    let rows = report.tensors
    guard let worst = rows.min(by: { $0.snrDB < $1.snrDB }) else { return "quantization: no tensor narrowed" }
    let meanError = rows.reduce(0) { $0 + $1.maxAbsError } / Double(rows.count)
    let before = rows.reduce(0) { $0 + $1.bytesBefore }, after = rows.reduce(0) { $0 + $1.bytesAfter }
    return "quantization: \(rows.count) tensors, worst \(worst.name) (SNR \(worst.snrDB.isFinite ? shortNumber(worst.snrDB) : "inf") dB, "
        + "max |error| \(shortNumber(worst.maxAbsError))), mean max |error| \(shortNumber(meanError)), "
        + "\(grouped(before)) → \(grouped(after)) bytes (--details for every tensor)"
}

/// Three significant digits: `38.2`, `0.0123`, `4.55e-04`, `1.23e+06`.
func shortNumber(_ v: Double) -> String {
    guard v.isFinite, v != 0 else { return v == 0 ? "0" : "\(v)" }
    var exponent = Int(floor(log10(abs(v))))
    var mantissa = (v / pow(10, Double(exponent)) * 100).rounded() / 100
    if abs(mantissa) >= 10 { mantissa /= 10; exponent += 1 }
    if (-2...3).contains(exponent) {
        let scale = pow(10, Double(2 - exponent))
        var text = "\((v * scale).rounded() / scale)"
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }
    return "\(mantissa)e\(exponent < 0 ? "-" : "+")\(abs(exponent) < 10 ? "0" : "")\(abs(exponent))"
}

/// A failure the command itself detects (exit 2, one line).
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// "2GB", "500MiB", "1048576" → bytes.
func parseSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("kB", 1000), ("KB", 1000),
                                  ("MB", 1_000_000), ("GB", 1_000_000_000), ("B", 1)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        // Bounded before the conversion to Int (1e300B would trap): at most 2^52 bytes (4 PiB).
        guard let v = Double(text.dropLast(suffix.count)), v > 0, v * Double(factor) <= 0x1p52 else { return nil }
        return max(1, Int(v * Double(factor)))
    }
    return Int(text).flatMap { $0 > 0 ? $0 : nil }
}

/// What `convert --json` prints (Schemas/convert-result.schema.json): written or not (a failed parity run writes
/// nothing), where, what model, and the reports.
struct ConvertResult: Encodable {
    let written: Bool
    let destination: String
    let form: String
    let model: ModelConfig?
    let archive: String?
    let signature: String?
    let parity: ParityReport?
    let quantization: QuantizationReport?
    let warnings: [String]

    enum CodingKeys: String, CodingKey { case written, destination, form, model, archive, signature, parity, quantization, warnings }
    enum ModelKeys: String, CodingKey {
        case modelType = "model_type", layers, hiddenSize = "hidden_size", vocabSize = "vocab_size", parameterCount = "parameter_count", tied
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(written, forKey: .written)
        try c.encode(destination, forKey: .destination)
        try c.encode(form, forKey: .form)
        if let model {
            var m = c.nestedContainer(keyedBy: ModelKeys.self, forKey: .model)
            try m.encode(model.modelType, forKey: .modelType)
            try m.encode(model.layers, forKey: .layers)
            try m.encode(model.hiddenSize, forKey: .hiddenSize)
            try m.encode(model.vocabSize, forKey: .vocabSize)
            try m.encode(model.parameterCount, forKey: .parameterCount)
            try m.encode(model.tieWordEmbeddings, forKey: .tied)
        } else {
            try c.encodeNil(forKey: .model)
        }
        try c.encodeOrNull(archive, forKey: .archive)
        try c.encodeOrNull(signature, forKey: .signature)
        try c.encodeOrNull(parity, forKey: .parity)
        try c.encodeOrNull(quantization, forKey: .quantization)
        try c.encode(warnings, forKey: .warnings)
    }

    var text: String { (try! JSONValueEncoder().encode(self)).serialized(pretty: true) }
}
