import ArapackFormats
import ArapackModel

/// An HF tokenizer.json as llama.cpp's tokenizer metadata (docs/model-family.md, "The GGUF form"):
/// - a byte-level BPE (ByteLevel pre-tokenizer with GPT-2's split, no normalizer) is llama.cpp's `gpt2` model
///   with the `gpt-2` pre-tokenizer and the same merges;
/// - a Metaspace BPE (SentencePiece-style: `▁` for spaces, a prefix space always, byte fallback) is its `llama`
///   (SPM) model, each merged token scored −(rank of the merge that makes it) and `add_space_prefix` set.
/// Anything else llama.cpp would tokenize differently: `mismatch` says why (the file is then written only on request).
struct GGUFTokenizer {
    var metadata: [(key: String, value: GGUF.Value)] = []
    /// Why llama.cpp's tokenizer would not give the ids tokenizers gives (nil when it does).
    var mismatch: String?

    /// llama.cpp's token types.
    enum TokenType: Int32 { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    init(_ tokenizer: JSONValue, file: String, config: ModelConfig) throws {
        guard let model = tokenizer["model"], model["type"]?.stringValue == "BPE", let vocab = model["vocab"]?.members else {
            throw GGUFExportError.tokenizer(file: file, reason: "model.type is \(tokenizer["model"]?["type"]?.serialized() ?? "missing"); llama.cpp's tokenizers read BPE vocabularies only")
        }
        var tokens = [String?](repeating: nil, count: config.vocabSize)
        var types = [TokenType](repeating: .normal, count: config.vocabSize)
        for m in vocab {
            guard let id = m.value.intValue, tokens.indices.contains(id) else { continue }  // (TokenizerFiles checked the ids)
            tokens[id] = m.key
        }
        for added in tokenizer["added_tokens"]?.elements ?? [] {
            guard let id = added["id"]?.intValue, tokens.indices.contains(id), let content = added["content"]?.stringValue else { continue }
            tokens[id] = content
            types[id] = added["special"]?.boolValue == true ? .control : .userDefined
        }
        if let unk = model["unk_token"]?.stringValue, let id = tokens.firstIndex(of: unk) { types[id] = .unknown }
        for id in tokens.indices where tokens[id] == nil {
            tokens[id] = "<arapack_unused_\(id)>"
            types[id] = .unused
        }
        let merges = try Self.merges(model["merges"], file: file)
        let kind = Self.kind(tokenizer)
        var reasons = kind.reasons
        if model["continuing_subword_prefix"].map({ $0 != .null }) == true || model["end_of_word_suffix"].map({ $0 != .null }) == true {
            reasons.append("a continuing-subword prefix or end-of-word suffix, which llama.cpp's BPE does not know")
        }
        if merges.contains(where: { $0.0.contains(" ") || $0.1.contains(" ") }) {
            reasons.append("merges of tokens holding a space, which llama.cpp's merges list cannot hold")
        }
        metadata.append(("tokenizer.ggml.model", .string(kind.metaspace ? "llama" : "gpt2")))
        if kind.metaspace {
            let hex = Array("0123456789ABCDEF"), bytes = (0..<256).map { "<0x\(hex[$0 >> 4])\(hex[$0 & 15])>" }
            let index = Dictionary(tokens.enumerated().map { ($0.element!, $0.offset) }, uniquingKeysWith: { a, _ in a })
            if model["byte_fallback"]?.boolValue != true || !bytes.allSatisfy({ index[$0] != nil }) {
                reasons.append("no byte fallback: a character outside the vocabulary, which tokenizers turns into \(model["unk_token"]?.stringValue ?? "unk"), has no token in llama.cpp's SPM model (it stops the tokenizer)")
            } else {
                for b in bytes { types[index[b]!] = .byte }
            }
            var scores = [Float](repeating: 0, count: tokens.count)
            var scored = Set<Int>()
            for (rank, pair) in merges.enumerated() {
                guard let id = index[pair.0 + pair.1], scored.insert(id).inserted else { continue }
                scores[id] = -Float(rank)
            }
            metadata.append(("tokenizer.ggml.tokens", .strings(tokens.map { $0! })))
            metadata.append(("tokenizer.ggml.scores", .float32s(scores)))
            metadata.append(("tokenizer.ggml.token_type", .int32s(types.map(\.rawValue))))
            metadata.append(("tokenizer.ggml.add_space_prefix", .bool(true)))
        } else {
            metadata.append(("tokenizer.ggml.pre", .string(reasons.isEmpty ? "gpt-2" : "default")))
            metadata.append(("tokenizer.ggml.tokens", .strings(tokens.map { $0! })))
            metadata.append(("tokenizer.ggml.token_type", .int32s(types.map(\.rawValue))))
            metadata.append(("tokenizer.ggml.merges", .strings(merges.map { $0.0 + " " + $0.1 })))
        }
        // AraFusion's sequences start with bos (the training stream is bos, text, eos per document).
        metadata += GGUFExport.metadata(config, GGUFConfigKey.specialIDs)
        if let unk = types.firstIndex(of: .unknown) { metadata.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(unk)))) }
        metadata += [("tokenizer.ggml.add_bos_token", .bool(true)), ("tokenizer.ggml.add_eos_token", .bool(false))]
        mismatch = reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// Which of the two reproducible kinds the tokenizer is closest to, and what keeps it from being that kind exactly.
    /// What llama.cpp does otherwise with a SentencePiece-style (Metaspace) tokenizer, which no GGUF metadata changes:
    /// its SPM tokenizer always prepends a space (`add_space_prefix`), where `tokenizers`' Metaspace (prepend_scheme
    /// "always") prepends none to text that already starts with one. Clearing `add_space_prefix` would drop the
    /// prefix from every other text instead.
    public static let leadingSpaceNote = "llama.cpp gives text that starts with a space one more ▁ than tokenizers does (\" word\" is ▁ ▁word there, ▁word in tokenizers: llama.cpp always prepends a space, tokenizers' Metaspace not before one); every other text gives the same ids"

    /// The notes a GGUF file's tokenizer calls for: the leading-space difference of a Metaspace (llama) tokenizer.
    public static func notes(_ file: GGUFFile) -> [String] {
        file["tokenizer.ggml.model"]?.stringValue == "llama" && file["tokenizer.ggml.add_space_prefix"] == .bool(true) ? [leadingSpaceNote] : []
    }

    /// The notes of the tokenizer this writes (a Metaspace one is always written with `add_space_prefix`).
    var notes: [String] { metadata.contains { $0.key == "tokenizer.ggml.model" && $0.value == .string("llama") } ? [Self.leadingSpaceNote] : [] }

    static func kind(_ tokenizer: JSONValue) -> (metaspace: Bool, reasons: [String]) {
        let pre = tokenizer["pre_tokenizer"]
        let steps = pre?["type"]?.stringValue == "Sequence" ? (pre?["pretokenizers"]?.elements ?? []) : (pre.map { [$0] } ?? [])
        let types = steps.compactMap { $0["type"]?.stringValue }
        var reasons: [String] = []
        if let normalizer = tokenizer["normalizer"], normalizer != .null {
            reasons.append("normalizer \(normalizer["type"]?.stringValue ?? normalizer.serialized()): llama.cpp does not normalize text")
        }
        if types == ["Metaspace"], let m = steps.first {
            if m["replacement"]?.stringValue != "▁" { reasons.append("Metaspace replacement is not \"▁\"") }
            let always = m["prepend_scheme"]?.stringValue.map { $0 == "always" } ?? (m["add_prefix_space"]?.boolValue ?? true)
            if !always { reasons.append("Metaspace prepend_scheme is not \"always\" (llama.cpp adds the prefix space to every text)") }
            return (true, reasons)
        }
        if types == ["ByteLevel"], let b = steps.first {
            if b["add_prefix_space"]?.boolValue == true { reasons.append("ByteLevel add_prefix_space") }
            if b["use_regex"]?.boolValue == false { reasons.append("ByteLevel without GPT-2's split (use_regex false)") }
            return (false, reasons)
        }
        reasons.append("pre-tokenizer \(types.isEmpty ? "none" : types.joined(separator: "+")): llama.cpp reproduces ByteLevel (byte-level BPE) and Metaspace (SentencePiece-style BPE) only")
        return (false, reasons)
    }

    /// The merges as pairs (tokenizers writes `"a b"` or `["a", "b"]`).
    static func merges(_ value: JSONValue?, file: String) throws -> [(String, String)] {
        try (value?.elements ?? []).enumerated().map { i, m in
            if let s = m.stringValue {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 { return (String(parts[0]), String(parts[1])) }
            } else if let a = m.elements, a.count == 2, let x = a[0].stringValue, let y = a[1].stringValue {
                return (x, y)
            }
            throw TokenizerError.mergeNotPair(file: file, index: i)
        }
    }
}
