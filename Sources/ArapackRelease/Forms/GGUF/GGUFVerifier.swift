import ArapackFormats
import ArapackModel
import ArapackTensor

/// `arapack verify FILE.gguf`: the file parses strictly (else exit 2), then named checks, each a problem list:
/// the metadata agrees with the tensors (the family's shapes from the `gpt2.*` sizes), the tie is stored once,
/// every value is finite, the tensor types are the ones arapack writes, and the tokenizer is complete.
public enum GGUFVerifier {
    public static func verify(path: String) throws -> VerifyReport {
        let file = try GGUFFile(path: path)
        var report = VerifyReport(path: path)
        var model: ReleaseModel?
        report.checks.append(VerifyReport.Check(name: "metadata ⇄ tensors", problems: problems {
            model = try ReleaseModel(path: path, allowUntied: true)
        }))
        report.checks.append(VerifyReport.Check(name: "tie", problems: tieProblems(file, model)))
        report.checks.append(VerifyReport.Check(name: "tensor types", problems: typeProblems(file, model)))
        report.checks.append(VerifyReport.Check(name: "NaN/Inf", problems: try nonFiniteProblems(file)))
        let notes = (file[GGUFExport.mismatchKey]?.stringValue.map { ["mismatch (recorded: \($0))"] } ?? []) + GGUFTokenizer.notes(file)
        report.checks.append(VerifyReport.Check(name: "tokenizer", problems: tokenizerProblems(file, vocab: model?.config.vocabSize),
                                                note: notes.isEmpty ? nil : notes.joined(separator: "; ")))
        return report
    }

    /// A check's problems: what `body` throws, as one line.
    static func problems(_ body: () throws -> Void) -> [String] {
        do { try body(); return [] } catch { return ["\(error)"] }
    }

    static func tieProblems(_ file: GGUFFile, _ model: ReleaseModel?) -> [String] {
        guard file.tensorNames.contains(NamingLayout.gguf.name(of: ModelFamily.lmHead)) else { return [] }
        guard let model else { return [] }
        return model.tied ? ["output.weight equals token_embd.weight bit for bit: a tied model stores the matrix once (llama.cpp reuses token_embd)"] : []
    }

    static func typeProblems(_ file: GGUFFile, _ model: ReleaseModel?) -> [String] {
        let vectors = file.entries.compactMap { e in
            let vector = e.shape.count == 1 || e.name == NamingLayout.gguf.name(of: ModelFamily.positionEmbedding)
            return vector && e.type != .f32 ? "\(e.name) is \(e.type.name); vectors and the position table are F32" : nil
        }
        // Every matrix has the type its file type gives it (GGUFScheme: llama_model_quantize's choice).
        guard vectors.isEmpty, let model, model.ggufScheme == nil else { return vectors }
        return ["the tensor types are not those of any file type arapack writes for general.file_type \(file["general.file_type"]?.summary ?? "(missing)")"]
    }

    static func nonFiniteProblems(_ file: GGUFFile) throws -> [String] {
        try file.tensorNames.compactMap { name in
            let n = try file.tensor(named: name).nonFiniteCount()
            return n > 0 ? "\(name) holds \(n) NaN or infinite values" : nil
        }
    }

    public static func tokenizerProblems(_ file: GGUFFile, vocab: Int?) -> [String] {
        var out: [String] = []
        guard case let .strings(tokens)? = file["tokenizer.ggml.tokens"] else { return ["no tokenizer.ggml.tokens (an array of strings)"] }
        let model = file["tokenizer.ggml.model"]?.stringValue
        if model != "gpt2" && model != "llama" { out.append("tokenizer.ggml.model is \(model ?? "missing"); arapack writes gpt2 or llama") }
        if let vocab, tokens.count != vocab { out.append("\(tokens.count) tokens for \(vocab) embedding rows") }
        if case let .ints(types)? = file["tokenizer.ggml.token_type"] {
            if types.count != tokens.count { out.append("\(types.count) token types for \(tokens.count) tokens") }
            if let bad = types.firstIndex(where: { !(1...6).contains($0) }) { out.append("token \(bad) has type \(types[bad]), not 1...6") }
        } else {
            out.append("no tokenizer.ggml.token_type (an array of integers)")
        }
        for key in ["bos", "eos", "padding", "mask", "unknown"] {
            if let id = file["tokenizer.ggml.\(key)_token_id"], !(0..<tokens.count).contains(id.intValue ?? -1) {
                out.append("tokenizer.ggml.\(key)_token_id \(id.summary) is not a token")
            }
        }
        if model == "llama" {
            if case let .floats(scores)? = file["tokenizer.ggml.scores"], scores.count == tokens.count {} else {
                out.append("a llama tokenizer needs tokenizer.ggml.scores, one per token")
            }
        } else if case let .strings(merges)? = file["tokenizer.ggml.merges"] {
            let known = Set(tokens)
            if let i = merges.firstIndex(where: { m in
                let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                return parts.count != 2 || !known.contains(String(parts[0])) || !known.contains(String(parts[1])) || !known.contains(parts.joined())
            }) {
                out.append("merge \(i) (\(merges[i].prefix(40))) is not two tokens whose concatenation is a token")
            }
        } else {
            out.append("a gpt2 tokenizer needs tokenizer.ggml.merges")
        }
        return out
    }
}
