import ArapackFormats
import ArapackModel
import ArapackTensor

/// The model card (README.md, YAML front matter and a body) and the `.gitattributes` the Hugging Face Hub
/// expects, built only from what arapack knows about the bundle: no times, hosts or absolute paths.
public struct ModelCard: Sendable {
    /// What the user chooses about the card.
    public struct Options: Sendable {
        /// The Hub repository the release is published as (`OWNER/NAME`, `--repo-id`): the card's title is its name
        /// and the quick start loads it. Without one, both use the model's family and size (`AraFusion-AR-381M`),
        /// never the output folder's name, so that a release's bytes do not depend on where it was written.
        public var repoID: String?
        /// An SPDX-style license id for the front matter.
        public var license: String
        /// The Hub id of the model this one derives from, for the front matter's `base_model`.
        public var baseModel: String?
        /// The user's own card (`--model-card`, read and checked by `ModelCard(userCardAt:)`), used instead of the generated one.
        public var userCard: ModelCard?
        /// The run's metrics (`--training-log`): the bundle carries their plots and the card shows them.
        public var trainingLog: TrainingLog?
        public init(repoID: String? = nil, license: String = ModelCard.defaultLicense, baseModel: String? = nil, userCard: ModelCard? = nil) {
            self.repoID = repoID
            self.license = license
            self.baseModel = baseModel
            self.userCard = userCard
        }

        /// The name the release goes by (its card's title, its archive's top folder, its signature's subject):
        /// the repository's name, or the family and size of `config`.
        public func releaseName(_ config: ModelConfig) -> String {
            repoID.flatMap { $0.split(separator: "/").last.map(String.init) } ?? config.defaultReleaseName
        }

        /// What the quick start loads: the Hub repository, or the release's folder (the archive unpacks to it).
        func repository(_ config: ModelConfig) -> String { repoID ?? "./" + releaseName(config) }
    }

    public static let fileName = "README.md"
    public static let gitAttributesFileName = ".gitattributes"
    public static let defaultLicense = "apache-2.0"
    /// The Hub refuses plain git for files past 10 MiB; such files are routed through LFS by name.
    static let lfsThreshold = 10 << 20
    /// A user's card is read whole; past this it is refused.
    public static let maximumSize = 1 << 20

    /// Whether `id` can stand in the front matter as it is (letters, digits, `.`, `-`, `+`; at most 64).
    public static func isValidLicense(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-+".unicodeScalars.contains($0)) }
    }

    /// Whether `id` is a Hub repository id (`owner/name` or `name`: letters, digits, `-`, `_`, `.`; at most 96).
    public static func isValidModelID(_ id: String) -> Bool {
        let parts = id.split(separator: "/", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && id.utf8.count <= 96 && parts.allSatisfy { part in
            !part.isEmpty && part != "." && part != ".." && part.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0)) }
        }
    }

    /// The card's text.
    public let text: String

    /// The user's own card at `path` (`--model-card`): a regular file of at most `maximumSize` bytes, UTF-8, whose
    /// front matter `frontMatterProblem` finds nothing wrong with. Checked here, once.
    public init(userCardAt path: String) throws {
        let file = try MappedFile(path: path)
        guard file.count <= Self.maximumSize else {
            throw BundleError.modelCard(file: path, problem: "a model card of \(file.count) bytes; at most \(Self.maximumSize)")
        }
        guard let text = String(validating: file.withUnsafeBytes { Array($0) }, as: UTF8.self) else {
            throw BundleError.modelCard(file: path, problem: "the model card is not UTF-8")
        }
        if let problem = Self.frontMatterProblem(text) { throw BundleError.modelCard(file: path, problem: problem) }
        self.text = text
    }

    /// What is wrong with a card's YAML front matter, or nil. The Hub reads the block between a first line
    /// `---` and the next `---` as YAML metadata: here each line in it must be a `key: value` mapping entry
    /// (keys unique), a list item or an indented continuation, and `license` must be stated.
    public static func frontMatterProblem(_ card: String) -> String? {
        // The lines up to the closing ---, read no further (the body can be long).
        // Split on LF scalars: a String's Characters join CR LF into one, which is not "\n".
        var lines: [Substring] = []
        var rest = card[...].unicodeScalars
        while !rest.isEmpty {
            let end = rest.firstIndex(of: "\n") ?? rest.endIndex
            var line = rest[..<end]
            if line.last == "\r" { line = line.dropLast() }
            lines.append(Substring(line))
            if lines.count == 1 ? lines[0] != "---" : lines.last == "---" { break }
            rest = end == rest.endIndex ? rest[end...] : rest[rest.index(after: end)...]
        }
        guard lines.first == "---" else { return "the card does not begin with a YAML front matter block (a first line ---)" }
        guard lines.count > 1, lines.last == "---" else { return "the front matter block has no closing --- line" }
        let close = lines.count - 1
        var keys = Set<String>()
        for (i, line) in lines[1..<close].enumerated() where !line.allSatisfy({ $0 == " " }) && !line.hasPrefix("#") {
            if line.contains("\t") { return "front matter line \(i + 2) holds a tab (YAML indents with spaces)" }
            if line.hasPrefix(" ") || line.hasPrefix("- ") || line == "-" { continue }
            guard let colon = line.firstIndex(of: ":"), line[line.index(after: colon)...].first.map({ $0 == " " }) ?? true else {
                return "front matter line \(i + 2) is not a \"key: value\" entry: \(String(line.prefix(60)).escapingControlCharacters)"
            }
            let key = String(line[..<colon])
            guard !key.isEmpty, key.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-".unicodeScalars.contains($0)) }) else {
                return "front matter line \(i + 2) has a key that is not a plain name: \(String(key.prefix(60)).escapingControlCharacters)"
            }
            guard keys.insert(key).inserted else { return "front matter key \(key) appears twice" }
        }
        return keys.contains("license") ? nil : "the front matter states no license"
    }

    /// The card of a bundle of `model` written in `form` with weights of `dtype` (a torch dtype name),
    /// listing `files` (every file written before the card), with the quantization report when there is one.
    init(model: ReleaseModel, form: any BundleForm, dtype: String, options: Options, tokenizer: TokenizerFiles?, sourceDigest: String?,
         quantization: QuantizationReport?, parity: ParitySummary? = nil, files: [WrittenFile]) {
        let c = model.config
        var lines = Self.frontMatter(c, form: form, dtype: dtype, options: options)
        lines += [
            "",
            "# \(Self.plain(options.releaseName(c)))",
            "",
            "An AraFusion \(c.causal ? "autoregressive (causal)" : "masked-diffusion (bidirectional)") Arabic language model, "
                + "released by arapack \(arapackVersion)"
                + form.cardLoading,
        ]
        lines += Self.details(c, form: form, dtype: dtype, tokenizer: tokenizer != nil)
        lines += Self.training(model, sourceDigest: sourceDigest)
        if let log = options.trainingLog { lines += Self.curves(log) }
        if let q = quantization { lines += Self.quantization(q) }
        if let p = parity { lines += Self.parity(p) }
        lines += Self.examples(c, form: form, quantized: LinearQuantization.Scheme(rawValue: dtype)?.rawValue, repository: options.repository(c),
                               published: options.repoID != nil, tokenizer: tokenizer != nil)
        lines += Self.files(files)
        text = lines.joined(separator: "\n")
    }

    /// The YAML front matter the Hub reads: license, language, pipeline and tags.
    static func frontMatter(_ c: ModelConfig, form: any BundleForm, dtype: String, options: Options) -> [String] {
        [
            "---",
            "license: \(options.license)",
        ] + (options.baseModel.map { ["base_model: \($0)"] } ?? []) + [
            "language:",
            "- ar",
            "library_name: transformers",
            "pipeline_tag: \(c.causal ? "text-generation" : "fill-mask")",
            "tags:",
            "- arafusion",
            "- arapack",
        ] + form.cardTags.map { "- " + $0 } + (LinearQuantization.Scheme(rawValue: dtype).map { ["- compressed-tensors", "- " + $0.rawValue] } ?? []) + [
            "---",
        ]
    }

    /// The model details table.
    static func details(_ c: ModelConfig, form: any BundleForm, dtype: String, tokenizer: Bool) -> [String] {
        ([
            "",
            "## Model details",
            "",
            "| | |",
            "|---|---|",
            "| architecture | \(form.architecture(c)) (`model_type` \(form.modelType(c))) |",
            "| parameters | \(c.parameterCount) (\(c.tieWordEmbeddings ? "the tied embedding / LM head counted once" : "untied")) |",
            "| layers | \(c.layers) |",
            "| hidden size | \(c.hiddenSize) |",
            "| attention heads | \(c.heads) (head size \(c.hiddenSize / c.heads)) |",
            "| feed-forward size | \(c.intermediateSize) |",
            "| positions | \(c.maxPositions) (learned) |",
            "| vocabulary | \(c.vocabSize) |",
            "| activation | \(c.activation == "gelu" ? "GELU (exact erf)" : "ReLU") |",
            "| attention | \(c.causal ? "causal" : "bidirectional"), pre-LayerNorm blocks, LayerNorm eps \(JSONValue.double(c.layerNormEps).serialized()) |",
            "| weights | \(dtype) |",
            "| special tokens | bos \(c.bos), eos \(c.eos), pad \(c.pad), mask \(c.mask) |",
        ] as [String]) + (tokenizer ? [] : [Self.noTokenizerRow])
    }

    /// The details row of a release without a tokenizer: the card says so where a reader looks for it.
    static let noTokenizerRow = "| tokenizer | **none**: this release carries no tokenizer; AutoTokenizer cannot load it, and text must be turned into ids elsewhere |"

    /// The training curves (`TrainingPlots`' files beside the card) and the final losses.
    static func curves(_ log: TrainingLog) -> [String] {
        func last(_ series: TrainingLog.Series) -> String {
            guard let s = series.steps.last, let v = series.values.last else { return "n/a" }
            return "\(metricText(v)) at step \(grouped(Int(s)))"
        }
        return [
            "",
            "### Training curves",
            "",
            "From the run's log (\(log.rows) steps logged): final training loss \(last(log.trainLoss)), final validation loss "
                + "\(last(log.validationLoss)).",
            "",
            "![Training loss](\(TrainingPlots.trainingLoss))",
            "![Validation loss](\(TrainingPlots.validationLoss))",
            "![Training and validation loss](\(TrainingPlots.bothLosses))",
            "![Learning rate](\(TrainingPlots.learningRate))",
        ]
    }

    /// What the source records of its training, and the source itself.
    static func training(_ model: ReleaseModel, sourceDigest: String?) -> [String] {
        var lines = ["", "## Training", ""]
        if model.trainingMetadata.isEmpty {
            lines.append("The source recorded no training metadata.")
        } else {
            lines.append("As the source checkpoint records it (`training_metadata.json`):")
            lines.append("")
            for m in model.trainingMetadata {
                lines.append("- \(Self.plain(m.key)): \(Self.plain(String(m.value.serialized().prefix(300))))")
            }
        }
        return lines + [
            "",
            "Source: \(Self.plain(model.info.format)) checkpoint" + (sourceDigest.map { ", SHA-256 `\($0)`" } ?? "")
                + (model.step.map { ", step \($0)" } ?? "") + ".",
        ]
    }

    /// The quantization report (int8, int4, or a narrowing cast): each tensor's error against the source.
    static func quantization(_ q: QuantizationReport) -> [String] {
        [
            "",
            "## Quantization",
            "",
            "\(Self.plain(q.method)); the error of each tensor against the source:",
            "",
            "| tensor | max abs error | SNR (dB) | bytes before | bytes after |",
            "|---|---|---|---|---|",
        ] + q.tensors.map { t in "| \(Self.plain(t.name)) | " + t.cells.map(Self.plain).joined(separator: " | ") + " |" }
    }

    /// The parity run before release.
    static func parity(_ p: ParitySummary) -> [String] {
        var lines = [
            "",
            "## Parity",
            "",
            "arapack's reference forward pass ran the source checkpoint and this bundle on \(p.probes) probe sequences of "
                + "\(p.seqLen) tokens before release (thresholds: \(Self.plain(p.thresholds))):",
            "",
            "| max abs logit difference | mean KL | top-1 agreement | passed |",
            "|---|---|---|---|",
            "| \(ParitySummary.text(p.maxAbsDiff)) | \(ParitySummary.text(p.meanKL)) | \(ParitySummary.text(p.top1Agreement)) | \(p.passed) |",
        ]
        guard let d = p.data else {
            return lines + ["", "The probes were random token ids: these figures show that the bundle computes the checkpoint's function, "
                + "and are no measure of its quality on text."]
        }
        lines += [
            "",
            "## Quality on the model's own data",
            "",
            "The probes were \(d.sequences) sequences of real token ids (\(d.tokens) positions scored), from:",
            "",
            "| shard | bytes | SHA-256 |",
            "|---|---|---|",
        ] + d.shards.map { "| \(Self.plain($0.file)) | \($0.bytes) | `\($0.sha256)` |" } + [
            "",
            "| | perplexity | mean KL from the checkpoint | same top token | RMS Δp of the correct token |",
            "|---|---|---|---|---|",
            "| checkpoint | \(d.referencePerplexity.map(ParitySummary.text) ?? "n/a") | 0 | 1 | 0 |",
            "| this bundle | \(d.perplexity.map(ParitySummary.text) ?? "n/a") | \(ParitySummary.text(d.meanKL)) | \(ParitySummary.text(d.sameTopP)) | "
                + "\(d.deltaPRMS.map(ParitySummary.text) ?? "n/a") |",
        ]
        return lines
    }

    /// Every file written before the card, with its size and SHA-256.
    static func files(_ files: [WrittenFile]) -> [String] {
        [
            "",
            "## Files",
            "",
            "| file | bytes | SHA-256 |",
            "|---|---|---|",
        ] + files.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }).map { f in
            "| \(Self.plain(f.name)) | \(f.size) | `\(f.sha256)` |"
        } + ["", "`manifest.json` lists every file of the bundle with its size and SHA-256; `arapack verify` checks them.", ""]
    }

    /// `.gitattributes`: safetensors and archives through LFS, and any other file past the Hub's limit by name.
    static func gitAttributes(_ files: [WrittenFile]) -> String {
        var lines = ["*.safetensors filter=lfs diff=lfs merge=lfs -text", "*.tar.zst filter=lfs diff=lfs merge=lfs -text"]
        for f in files.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) })
        where f.size > lfsThreshold && !f.name.hasSuffix(".safetensors") {
            lines.append("\(f.name) filter=lfs diff=lfs merge=lfs -text")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Text from a file made safe for one markdown line: control characters escaped, `|` and backticks replaced.
    static func plain(_ s: String) -> String {
        s.escapingControlCharacters.reduce(into: "") { out, c in out += c == "|" ? "\\|" : c == "`" ? "'" : String(c) }
    }
}
