import ArapackFormats
import ArapackModel
import ArapackTensor

/// What `arapack eval` asks for: a model scored on token shards, alone or against a reference, on all the shards'
/// sequences or a selection of them, whole or one part of N.
public struct EvaluationRequest {
    public var model: String
    public var tokens: String
    public var reference: String?
    /// The dtype of raw memmap shards (`--token-dtype`).
    public var rawDType: TokenDType?
    /// Where a 1-D stream or raw shard is cut into sequences (`--seq-len`; default: the model's positions).
    public var sequenceLength: Int?
    /// How many sequences to score (default: all).
    public var sequenceCount: Int?
    /// Sample the sequences with this seed (SplitMix64) instead of taking them in order.
    public var seed: UInt64?
    /// Score the `index`-th of `count` disjoint parts (zero-based).
    public var part: (index: Int, count: Int)?

    public init(model: String, tokens: String) {
        self.model = model
        self.tokens = tokens
    }

    /// Opens the model (and the reference), reads the shards, and scores the selected sequences, one batch of logits
    /// per side at a time. Throws `EvaluationError` for what cannot be evaluated.
    public func run(progress: Progress) throws -> EvaluationPart {
        let model = try ReleaseModel(path: model)
        let reference = try self.reference.map { try ParityRequest.openSource($0, for: model) }
        let c = model.config
        if reference == nil && !c.causal { throw EvaluationError.noNextTokenLoss(model: self.model) }
        let shards = try TokenShards(path: tokens, rawDType: rawDType, sequenceLength: sequenceLength ?? c.maxPositions)
        let selection = try Self.select(shards, positions: c.maxPositions, causal: c.causal, count: sequenceCount, seed: seed)
        let mine = part.map { p in Array(selection[(selection.count * p.index / p.count)..<(selection.count * (p.index + 1) / p.count)]) } ?? selection
        var scores = TokenScores()
        let total = mine.reduce(0) { $0 + $1.count }
        progress.begin("evaluating \(mine.count) sequences", total: total, unit: .tokens)
        for batch in Self.batches(mine, vocab: c.vocabSize) {
            let ids = try batch.map { try shards.ids(of: $0, vocabulary: c.vocabSize) }
            let referenceLogits = try reference.map { try Self.logits($0, ids) }
            scores.add(model: try Self.logits(model, ids), reference: referenceLogits, ids: ids, vocab: c.vocabSize, causal: c.causal)
            progress.advance(ids.reduce(0) { $0 + $1.count })
        }
        progress.end()
        return EvaluationPart(model: self.model, reference: self.reference, shards: try Self.describe(shards),
                              selection: .init(sequences: selection.count, seed: seed, sequenceLength: sequenceLength),
                              part: part.map { [$0.index, $0.count] } ?? [0, 1], causal: c.causal, sequences: mine.count, scores: scores)
    }

    /// The sequences to score: each shard sequence cut into runs of at most `positions` ids (a causal model needs two
    /// ids to score one), then the first `count` of them, or `count` drawn without replacement by `seed` and kept in
    /// the shards' order.
    static func select(_ shards: TokenShards, positions: Int, causal: Bool, count: Int?, seed: UInt64?) throws -> [TokenShards.Sequence] {
        var runs: [TokenShards.Sequence] = []
        for s in shards.sequences {
            for start in stride(from: 0, to: s.count, by: positions) where s.count - start >= (causal ? 2 : 1) {
                runs.append(TokenShards.Sequence(file: s.file, start: s.start + start, count: min(positions, s.count - start)))
            }
        }
        guard !runs.isEmpty else { throw EvaluationError.nothingToScore(tokens: shards.path) }
        let n = min(count ?? runs.count, runs.count)
        guard let seed else { return Array(runs.prefix(n)) }
        // A partial Fisher–Yates shuffle by SplitMix64: the same choice on every machine.
        var order = Array(runs.indices), random = SplitMix64(seed: seed)
        for i in 0..<n { order.swapAt(i, i + Int(random.next() % UInt64(runs.count - i))) }
        return order.prefix(n).sorted().map { runs[$0] }
    }

    /// Consecutive runs of equal length, grouped so one batch's float32 logits stay under `Parity.batchLogitBytes`.
    static func batches(_ runs: [TokenShards.Sequence], vocab: Int) -> [[TokenShards.Sequence]] {
        var out: [[TokenShards.Sequence]] = []
        for r in runs {
            let limit = max(1, Parity.batchLogitBytes / max(1, r.count * vocab * 4))
            if let last = out.last, last[0].count == r.count, last.count < limit { out[out.count - 1].append(r) } else { out.append([r]) }
        }
        return out
    }

    /// One model's logits for `ids`, its pass dropped (and its mapped pages) before the other side's is built.
    static func logits(_ model: ReleaseModel, _ ids: [[Int]]) throws -> [Float] {
        let pass = try ForwardPass(model)
        defer { pass.discardMappedPages() }
        return try pass.logits(ids)
    }

    /// Each shard file by name, size and SHA-256.
    static func describe(_ shards: TokenShards) throws -> [EvaluationPart.Shard] {
        var files = shards.files.map(\.path)
        // A Megatron pair is named by both files.
        for f in shards.files where f.path.hasSuffix(".bin") { files.append(String(f.path.dropLast(4)) + ".idx") }
        return try files.sorted().map { EvaluationPart.Shard(file: splitPath($0).1, bytes: try fileSize($0), sha256: try SHA256.hex(ofFile: $0)) }
    }
}

/// What an evaluation scored: enough to write its report, or, as one part of N, to be merged with the others into the
/// report one run would have written, bit for bit (`merge`).
public struct EvaluationPart: Equatable {
    public struct Shard: Codable, Equatable, Sendable {
        public var file: String
        public var bytes: Int
        public var sha256: String
    }
    /// How the sequences were chosen (the same for every part of a run).
    public struct Selection: Codable, Equatable, Sendable {
        public var sequences: Int
        public var seed: UInt64?
        public var sequenceLength: Int?

        enum CodingKeys: String, CodingKey { case sequences, seed, sequenceLength = "seq_len" }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(sequences, forKey: .sequences)
            try c.encodeOrNull(seed, forKey: .seed)
            try c.encodeOrNull(sequenceLength, forKey: .sequenceLength)
        }
    }

    public var model: String
    public var reference: String?
    public var shards: [Shard]
    public var selection: Selection
    /// `[index, count]`: which part of how many (`[0, 1]` for a whole run).
    public var part: [Int]
    public var causal: Bool
    /// Sequences scored in this part.
    public var sequences: Int
    public var scores: TokenScores

    /// The parts of one run, in any order, as the whole run: they must agree on everything but their scores and
    /// cover every part once. Throws `EvaluationError.parts` naming the disagreement.
    public static func merge(_ parts: [(file: String, part: EvaluationPart)]) throws -> EvaluationPart {
        guard let first = parts.first?.part else { throw EvaluationError.parts("no parts given") }
        let n = first.part[1]
        let sorted = parts.sorted { $0.part.part[0] < $1.part.part[0] }
        guard sorted.map(\.part.part) == (0..<n).map({ [$0, n] }) else {
            throw EvaluationError.parts("the parts given are \(sorted.map { "\($0.part.part[0] + 1)/\($0.part.part[1])" }.joined(separator: ", ")); a run of \(n) parts needs each of 1/\(n) … \(n)/\(n) once")
        }
        var whole = sorted[0].part
        for (file, p) in sorted.dropFirst() {
            for (what, same) in [("model", p.model == first.model), ("reference", p.reference == first.reference), ("shards", p.shards == first.shards),
                                 ("selection", p.selection == first.selection), ("model kind", p.causal == first.causal)] where !same {
                throw EvaluationError.parts("\(file): its \(what) differs from \(parts[0].file)'s; parts of one run agree on it")
            }
            whole.scores.append(p.scores)
            whole.sequences += p.sequences
        }
        whole.part = [0, 1]
        return whole
    }

    /// The report of this run (or merged run).
    public var report: EvaluationReport { EvaluationReport(part: self) }
}

/// Why an evaluation cannot run (exit 2, or 64 for flags that cannot go together).
public enum EvaluationError: Error, CustomStringConvertible, Sendable {
    case noNextTokenLoss(model: String)
    case nothingToScore(tokens: String)
    case parts(String)
    case partFile(file: String, problem: String)

    public var description: String {
        switch self {
        case let .noNextTokenLoss(model):
            return "\(model): a bidirectional (MDLM) model has no next-token loss; pass --against SRC to compare its distributions with another model's"
        case let .nothingToScore(tokens): return "\(tokens): no sequence of at least two ids to score"
        case let .parts(detail): return "--merge: \(detail)"
        case let .partFile(file, problem): return "\(file): not an eval part arapack wrote: \(problem)"
        }
    }
}
