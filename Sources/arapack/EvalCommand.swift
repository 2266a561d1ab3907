import ArapackFormats
import ArapackRelease
import ArgumentParser

/// `arapack eval MODEL --tokens SHARDS [--against SRC]`, and `arapack eval --merge PART.json…`.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a model on token shards: its loss and perplexity, and with --against, llama-perplexity's KL-divergence statistics.",
        discussion: """
            MODEL and SRC are anything arapack computes with: a checkpoint in any form, a bundle (any dtype, int8 and int4 \
            included, or its archive), a GPT-2 bundle, a GGUF file (computed with llama.cpp's GELU). SHARDS is a NumPy \
            .npy file (u2, u4, i4 or i8; a 1-D stream or 2-D [sequences, length]), a raw memmap file (--token-dtype), \
            a Megatron-LM indexed dataset (X.idx with X.bin), or a folder of them read in name order. Every id must \
            lie in the model's vocabulary.

            Sequences are cut into runs of at most the model's positions and taken in order (--sequences N: the \
            first N), or sampled without replacement by --seed. Every next-token position is scored, with the \
            reference forward pass (float32, the same bits on every CPU and thread count).

            Alone: the mean next-token cross-entropy in nats (the training loss) and the perplexity, e^(summed \
            cross-entropy / tokens scored). With --against SRC, llama-perplexity's report under its names: PPL of each \
            side and the mean ln(PPL(Q)/PPL(base)) with its uncertainty; KL(SRC ‖ MODEL) mean ± uncertainty, maximum, \
            99.9%, 99%, 95%, 90%, median, 10%, 5%, 1%, 0.1%, minimum; Δp of the correct token (mean, RMS, the same \
            percentiles); same top p with its binomial error. A bidirectional (MDLM) model has no next-token loss: \
            it gets the KL and top-1 figures over every position.

            Across machines: --shard I/N scores the I-th of N disjoint parts and --report PART.json keeps what the \
            merge needs; arapack eval --merge PART.json… writes the report one run would have, bit for bit.

            Exit status: 0 done; 2 a model or shard could not be read (the file, field and offset named); 64 usage error.
            """
    )

    @Argument(help: "The model to score (any checkpoint, bundle, GPT-2 bundle or GGUF file); none with --merge.")
    var model: String?

    @Option(help: "The token shards: a .npy file, a raw memmap file, a Megatron .idx/.bin pair, or a folder of them.")
    var tokens: String?

    @Option(help: "A reference model: report the KL divergence of MODEL from it, per llama-perplexity.")
    var against: String?

    @Option(help: "The dtype of raw memmap shards: u16, u32, i32 or i64.")
    var tokenDtype: String?

    @Option(help: "Cut 1-D streams and raw shards into sequences of this many ids (default: the model's positions).")
    var seqLen: Int?

    @Option(help: "Score this many sequences (default: all).")
    var sequences: Int?

    @Option(help: "Sample the sequences without replacement with this seed (SplitMix64) instead of taking the first ones.")
    var seed: UInt64?

    @Option(help: "Score the I-th of N disjoint parts (I from 1), for a job matrix; --report keeps what --merge needs.")
    var shard: String?

    @Option(parsing: .upToNextOption, help: "Merge the part files of one run (from --shard I/N --report) into its report.")
    var merge: [String] = []

    @Option(help: "Write the JSON report (Schemas/eval-report.schema.json; with --shard, the part file); '-' is standard output.")
    var report: String?

    @Flag(help: "Print the JSON report instead of the text.")
    var json = false

    @Flag(help: "No progress line.")
    var quiet = false

    func validate() throws {
        if merge.isEmpty {
            if model == nil || tokens == nil { throw ValidationError("give MODEL and --tokens SHARDS (or --merge PART.json…)") }
        } else if model != nil || tokens != nil || against != nil || shard != nil {
            throw ValidationError("--merge takes only the part files (and --report, --json)")
        }
        if let t = tokenDtype, TokenDType(rawValue: t) == nil { throw ValidationError("--token-dtype: \(t); one of u16, u32, i32, i64") }
        if let l = seqLen, l < 2 { throw ValidationError("--seq-len must be at least 2") }
        if let n = sequences, n < 1 { throw ValidationError("--sequences must be at least 1") }
        if let s = shard, Self.part(s) == nil { throw ValidationError("--shard \(s): I/N with 1 ≤ I ≤ N, e.g. 2/8") }
        if shard != nil && report == nil { throw ValidationError("--shard needs --report PART.json: the part file is what --merge reads") }
    }

    /// "I/N" → (I − 1, N).
    static func part(_ text: String) -> (index: Int, count: Int)? {
        let p = text.split(separator: "/", omittingEmptySubsequences: false)
        guard p.count == 2, let i = Int(p[0]), let n = Int(p[1]), n >= 1, (1...n).contains(i) else { return nil }
        return (i - 1, n)
    }

    func run() throws {
        let progress = Progress(enabled: !quiet && Progress.standardErrorIsTerminal)
        try runReportingErrors("eval") {
            let part: EvaluationPart
            if merge.isEmpty {
                var request = EvaluationRequest(model: model!, tokens: tokens!)
                request.reference = against
                request.rawDType = tokenDtype.flatMap(TokenDType.init(rawValue:))
                request.sequenceLength = seqLen
                request.sequenceCount = sequences
                request.seed = seed
                request.part = shard.flatMap(Self.part)
                part = try request.run(progress: progress)
            } else {
                part = try EvaluationPart.merge(try merge.map { ($0, try EvaluationPart(json: try readJSON($0), file: $0)) })
            }
            let document = (shard != nil ? part.json : part.report.json).serialized(pretty: true) + "\n"
            if json || report == NamedOutput.standardOutput { print(document, terminator: "") } else { print(part.report.text) }
            if let report, report != NamedOutput.standardOutput { try NamedOutput.write(document, to: report) }
        }
    }
}
