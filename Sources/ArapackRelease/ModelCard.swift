import ArapackFormats

/// The model card (README.md, YAML front matter and a body) and the `.gitattributes` the Hugging Face Hub
/// expects, built only from what arapack knows about the bundle: no times, hosts or absolute paths.
public struct ModelCard {
    /// What the user chooses about the card.
    public struct Options: Sendable {
        /// The bundle's name (DST's last path component), used in the quick-start code as the folder to load.
        public var name: String
        /// An SPDX-style license id for the front matter.
        public var license: String
        public init(name: String, license: String = ModelCard.defaultLicense) {
            self.name = name
            self.license = license
        }
    }

    public static let fileName = "README.md"
    public static let gitAttributesFileName = ".gitattributes"
    public static let defaultLicense = "apache-2.0"
    /// The Hub refuses plain git for files past 10 MiB; such files are routed through LFS by name.
    static let lfsThreshold = 10 << 20

    /// Whether `id` can stand in the front matter as it is (letters, digits, `.`, `-`, `+`; at most 64).
    public static func isValidLicense(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || ".-+".unicodeScalars.contains($0)) }
    }

    /// The card's text.
    public let text: String

    /// The card of a bundle of `model` written in `layout` with weights of `dtype` (a torch dtype name),
    /// listing `files` (every file written before the card).
    init(model: ReleaseModel, layout: NamingLayout, dtype: String, options: Options, tokenizer: Bool, sourceDigest: String?,
         files: [WrittenFile]) {
        let c = model.config
        let gpt2 = layout == .gpt2
        var lines = [
            "---",
            "license: \(options.license)",
            "language:",
            "- ar",
            "library_name: transformers",
            "pipeline_tag: \(c.causal ? "text-generation" : "fill-mask")",
            "tags:",
            "- arafusion",
            "- arapack",
        ] + (gpt2 ? ["- gpt2"] : ["- custom_code"]) + [
            "---",
            "",
            "# \(Self.plain(options.name))",
            "",
            "An AraFusion \(c.causal ? "autoregressive (causal)" : "masked-diffusion (bidirectional)") Arabic language model, "
                + "released by arapack \(arapackVersion)"
                + (gpt2 ? " in transformers' stock GPT-2 layout: it loads as `GPT2LMHeadModel` with no remote code." : "."),
            "",
            "## Model details",
            "",
            "| | |",
            "|---|---|",
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
            "",
            "## Training",
            "",
        ]
        if model.trainingMetadata.isEmpty {
            lines.append("The source recorded no training metadata.")
        } else {
            lines.append("As the source checkpoint records it (`training_metadata.json`):")
            lines.append("")
            for m in model.trainingMetadata {
                lines.append("- \(Self.plain(m.key)): \(Self.plain(String(m.value.serialized().prefix(300))))")
            }
        }
        lines += [
            "",
            "Source: \(Self.plain(model.info.format)) checkpoint" + (sourceDigest.map { ", SHA-256 `\($0)`" } ?? "")
                + (model.step.map { ", step \($0)" } ?? "") + ".",
            "",
            "## Quick start",
            "",
            "```python",
        ] + Self.quickStart(c, name: options.name, tokenizer: tokenizer) + [
            "```",
            "",
            "## Files",
            "",
            "| file | bytes | SHA-256 |",
            "|---|---|---|",
        ]
        for f in files.sorted(by: { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }) {
            lines.append("| \(Self.plain(f.name)) | \(f.size) | `\(f.sha256)` |")
        }
        lines += ["", "`manifest.json` lists every file of the bundle with its size and SHA-256; `arapack verify` checks them.", ""]
        text = lines.joined(separator: "\n")
    }

    /// Python that loads this bundle from the folder it sits in and generates greedily, as written.
    static func quickStart(_ c: ModelConfig, name: String, tokenizer: Bool) -> [String] {
        let folder = JSONValue.string("./" + name).serialized()
        var code = [
            "import torch",
            "from transformers import AutoModelForCausalLM" + (tokenizer ? ", AutoTokenizer" : ""),
            "",
            "repo = \(folder)  # this folder, or the Hub repository it is published as",
            "model = AutoModelForCausalLM.from_pretrained(repo, torch_dtype=\"auto\")",
        ]
        if tokenizer {
            code += [
                "tokenizer = AutoTokenizer.from_pretrained(repo)",
                "ids = tokenizer(\"بسم الله الرحمن الرحيم\", return_tensors=\"pt\").input_ids[:, : model.config.n_positions // 2]",
            ]
        } else {
            code.append("ids = torch.tensor([[\(c.bos)]])")
        }
        code += [
            "with torch.no_grad():",
            "    logits = model(ids).logits  # [1, tokens, vocabulary]",
            "# greedy, up to generation_config.json's max_length (the model's positions)",
            "output = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False)",
            tokenizer ? "print(tokenizer.decode(output[0]))" : "print(output[0].tolist())",
        ]
        return code
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
