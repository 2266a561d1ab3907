import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// `arapack run MODEL --ids 1,2,3`.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the reference forward pass on one sequence: top-k next tokens and the logits' checksum.",
        discussion: """
            MODEL is a bundle (folder or .tar.zst) or any checkpoint arapack reads (pass --config when it records \
            no head count). The ids come from --ids (comma-separated) or --ids-file (whitespace- or \
            comma-separated). Prints the top-k tokens after the last position (with their strings when the model \
            has a tokenizer.json), and the SHA-256 of all logits as little-endian float32 [L, V]: equal checksums \
            mean bit-identical logits.
            """
    )

    @Argument(help: "A bundle or checkpoint.")
    var model: String

    @Option(help: "Token ids, comma-separated (e.g. 1,2,3).")
    var ids: String?

    @Option(help: "A file of token ids.")
    var idsFile: String?

    @Option(help: "How many next tokens to list.")
    var topK = 5

    @Option(help: "A config adding to the checkpoint's: a JSON file, or the JSON itself (e.g. '{\"n_heads\": 16}').")
    var config: String?

    func validate() throws {
        if (ids == nil) == (idsFile == nil) { throw ValidationError("give exactly one of --ids or --ids-file") }
        if topK < 1 { throw ValidationError("--top-k must be at least 1") }
    }

    func run() throws {
        try runReportingErrors("run") {
            let text = try ids ?? String(decoding: try MappedFile(path: idsFile!).withUnsafeBytes { Array($0) }, as: UTF8.self)
            let tokens = try text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" || $0 == "\t" }).map { piece -> Int in
                guard let v = Int(piece) else { throw CommandError("\(idsFile ?? "--ids"): \"\(piece)\" is not a token id") }
                return v
            }
            guard !tokens.isEmpty else { throw CommandError("\(idsFile ?? "--ids"): no token ids") }
            let release = try ReleaseModel(path: model, configFile: config, allowUntied: true)
            let c = release.config
            let logits = try ForwardPass(release).logits([tokens])
            let next = ForwardPass.nextTokens(logits[((tokens.count - 1) * c.vocabSize)...], k: topK)
            let checksum = logits.withUnsafeBytes { SHA256.hex(of: $0) }
            let names = (try? release.tokenizer.map { try $0.tokenStrings() }) ?? nil
            print("model     \(model): \(c.modelType), \(c.layers) layers, d \(c.hiddenSize), vocab \(c.vocabSize)")
            print("input     \(tokens.count) tokens: \(tokens.map(String.init).joined(separator: ","))")
            print("next      rank  id      logit      prob" + (names == nil ? "" : "      token"))
            for (rank, t) in next.enumerated() {
                let token = names.flatMap { $0[t.id] }.map { "  \($0.debugDescription)" } ?? ""
                print("          \(pad(rank + 1, 4))  \(pad(t.id, 6))  \(pad(t.logit, 9))  \(pad(t.probability, 8))" + token)
            }
            print("checksum  sha256 of logits [\(tokens.count), \(c.vocabSize)] f32-le: \(checksum)")
        }
    }

    private func pad<T>(_ v: T, _ width: Int) -> String {
        var s = "\(v)"
        if let d = v as? Double { s = String(format3: d) } else if let f = v as? Float { s = String(format3: Double(f)) }
        return String(repeating: " ", count: max(0, width - s.count)) + s
    }
}

extension String {
    /// Four decimal places.
    init(format3 v: Double) {
        let r = (v * 10_000).rounded() / 10_000
        self = "\(r)"
    }
}
