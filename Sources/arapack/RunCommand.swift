import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArgumentParser
import Dispatch
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

    @Flag(help: "Print the result as JSON (Schemas/run-result.schema.json): the top-k tokens with their exact logits and the checksum.")
    var json = false

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
            let names = (try? release.tokenizer.map { try $0.tokenStrings() }) ?? nil
            let pass = try ForwardPass(release)
            let results = RunResults()
            let logits = try pass.logits([tokens])
            // The logits' digest and the last position's ranking while the pass lets go of the weights' mapped pages
            // (paid at exit otherwise), all on every core.
            let topK = topK
            pass.discardMappedPages(alongside: [
                { results.checksum = logits.withUnsafeBytes { SHA256.hex(of: $0) } },
                { results.next = ForwardPass.nextTokens(logits[((tokens.count - 1) * c.vocabSize)...], k: topK) },
            ])
            let next = results.next, checksum = results.checksum
            if json {
                let result = RunResult(model: model, modelType: c.modelType, layers: c.layers, hiddenSize: c.hiddenSize, vocabSize: c.vocabSize,
                                       input: tokens, next: next.enumerated().map { rank, t in
                                           RunResult.Next(rank: rank + 1, id: t.id, logit: Double(t.logit), probability: t.probability,
                                                          token: names.flatMap { $0[t.id] })
                                       }, logitsSHA256: checksum)
                print((try JSONValueEncoder().encode(result)).serialized(pretty: true))
                return
            }
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
        if let d = v as? Double { s = fourDecimals(d) } else if let f = v as? Float { s = fourDecimals(Double(f)) }
        return String(repeating: " ", count: max(0, width - s.count)) + s
    }
}

/// `v` rounded to four decimal places, as the top-k table shows logits and probabilities.
func fourDecimals(_ v: Double) -> String { "\((v * 10_000).rounded() / 10_000)" }

/// What `run --json` prints (Schemas/run-result.schema.json).
struct RunResult: Encodable {
    struct Next: Encodable {
        let rank: Int
        let id: Int
        /// The logit as the forward pass computed it (a float32, written exactly).
        let logit: Double
        let probability: Double
        /// The token's string, when the model has a tokenizer.
        let token: String?

        enum CodingKeys: String, CodingKey { case rank, id, logit, probability, token }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(rank, forKey: .rank)
            try c.encode(id, forKey: .id)
            try c.encode(logit, forKey: .logit)
            try c.encode(probability, forKey: .probability)
            try c.encodeOrNull(token, forKey: .token)
        }
    }
    let model: String
    let modelType: String
    let layers: Int
    let hiddenSize: Int
    let vocabSize: Int
    let input: [Int]
    let next: [Next]
    let logitsSHA256: String

    enum CodingKeys: String, CodingKey {
        case model, modelType = "model_type", layers, hiddenSize = "hidden_size", vocabSize = "vocab_size", input, next
        case logitsSHA256 = "logits_sha256"
    }
}

/// What `arapack run`'s last two steps fill in side by side; each writes only its own field.
private final class RunResults: @unchecked Sendable {
    var checksum = ""
    var next: [(id: Int, logit: Float, probability: Double)] = []
}
