import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// A parity run: what was compared, the metrics, the limits, the verdict.
public struct ParityReport: Sendable {
    public var bundle: String
    public var reference: String
    public var referenceKind: String
    public var bundleDType: String
    /// What the checked side is (`bundle`, `GPT-2 bundle`, `GGUF file`).
    public var form: String = "bundle"
    public var probes: Int
    public var sequenceLength: Int
    public var seed: UInt64?
    public var metrics: ParityMetrics
    public var thresholds: ParityThresholds
    public var failures: [String]
    /// For a failed lossless run: the tensors whose bits differ from the reference's.
    public var differingTensors: [String] = []
    /// With `--tokens`: the data probed and the release's quality on it.
    public var data: ParityData? = nil
    public var passed: Bool { failures.isEmpty }

    /// The summary a bundle's card, manifest and signed provenance record of a parity run before release.
    public var summary: ParitySummary {
        ParitySummary(passed: passed, thresholds: thresholds.label, maxAbsDiff: metrics.maxAbsDiff, meanKL: metrics.meanKL,
                      top1Agreement: metrics.top1Agreement, probes: probes, seqLen: sequenceLength, data: data)
    }

    public var text: String {
        let m = metrics
        var lines = [
            "parity \(bundle) against \(referenceKind) \(reference)",
            "probes       \(probes) × \(sequenceLength) tokens" + (data != nil ? " of the given data" : seed.map { ", seed \($0)" } ?? ""),
            "dtype        \(bundleDType)" + (form == "bundle" ? "" : ", \(form)") + " (thresholds: \(thresholds.label))",
            "max |Δlogit| \(metricText(m.maxAbsDiff))" + (thresholds.maxAbsDiff.map { "   limit \(metricText($0))" } ?? ""),
            "NMSE         \(metricText(m.nmse))",
            "KL mean/max  \(metricText(m.meanKL)) / \(metricText(m.maxKL))" + (thresholds.maxMeanKL.map { "   limit mean \(metricText($0))" } ?? ""),
            "top-1 agree  \(metricText(m.top1Agreement))" + (thresholds.minTop1.map { "   limit \(metricText($0))" } ?? ""),
            "perplexity   \(metricText(m.referencePerplexity)) (reference) / \(metricText(m.candidatePerplexity)) (\(form))",
        ]
        if !differingTensors.isEmpty { lines.append("differs      " + differingTensors.joined(separator: ", ")) }
        if let d = data { lines += d.lines }
        lines.append(passed ? "parity passed" : "parity FAILED: " + failures.joined(separator: "; "))
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }

    /// The verdict in one line, as `--quiet` prints it: passed or failed, the limits' kind and the figures they bound.
    public var verdict: String {
        let m = metrics
        return (passed ? "parity passed" : "parity FAILED") + " (\(bundleDType), thresholds \(thresholds.label)): "
            + "max |Δlogit| \(metricText(m.maxAbsDiff)), mean KL \(metricText(m.meanKL)), top-1 \(metricText(m.top1Agreement))"
            + (passed ? "" : "; " + failures.joined(separator: "; "))
    }

    /// The report as `--report` and `verify --parity --report` write it.
    public var json: JSONValue { try! JSONValueEncoder().encode(self) }
}

extension ParityReport: Encodable {
    enum CodingKeys: String, CodingKey {
        case bundle, reference, bundleDType = "bundle_dtype", form, probes, seqLen = "seq_len", seed, metrics, thresholds
        case differingTensors = "differing_tensors", data, passed, failures
    }
    enum ReferenceKeys: String, CodingKey { case kind, path }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(bundle, forKey: .bundle)
        var r = c.nestedContainer(keyedBy: ReferenceKeys.self, forKey: .reference)
        try r.encode(referenceKind, forKey: .kind)
        try r.encode(reference, forKey: .path)
        try c.encode(bundleDType, forKey: .bundleDType)
        try c.encode(form, forKey: .form)
        try c.encode(probes, forKey: .probes)
        try c.encode(sequenceLength, forKey: .seqLen)
        try c.encodeOrNull(seed, forKey: .seed)
        try c.encode(metrics, forKey: .metrics)
        try c.encode(thresholds, forKey: .thresholds)
        try c.encode(differingTensors, forKey: .differingTensors)
        try c.encodeOrNull(data, forKey: .data)
        try c.encode(passed, forKey: .passed)
        try c.encode(failures, forKey: .failures)
    }
}

/// What a parity run before release records: manifest.json's `parity`, the card's parity section and the signed
/// provenance read this one type (keys spelled once, in `CodingKeys`; a non-finite metric is written as its name).
public struct ParitySummary: Codable, Equatable, Sendable {
    public var passed: Bool
    /// The thresholds' label (`lossless`, `bf16 (overridden)`, …).
    public var thresholds: String
    public var maxAbsDiff: Double
    public var meanKL: Double
    public var top1Agreement: Double
    public var probes: Int
    public var seqLen: Int
    /// The data probed, with `--tokens` (absent, not null, without: a release probed with random ids keeps the bytes
    /// it had before data could be given).
    public var data: ParityData?

    public enum CodingKeys: String, CodingKey {
        case passed, thresholds, maxAbsDiff = "max_abs_diff", meanKL = "mean_kl", top1Agreement = "top1_agreement", probes
        case seqLen = "seq_len", data
    }

    public init(passed: Bool, thresholds: String, maxAbsDiff: Double, meanKL: Double, top1Agreement: Double, probes: Int, seqLen: Int,
                data: ParityData? = nil) {
        (self.passed, self.thresholds, self.maxAbsDiff, self.meanKL) = (passed, thresholds, maxAbsDiff, meanKL)
        (self.top1Agreement, self.probes, self.seqLen, self.data) = (top1Agreement, probes, seqLen, data)
    }

    /// A metric as written and shown: its JSON number, or `nan` / `inf` for a non-finite one.
    public static func text(_ v: Double) -> String { v.isFinite ? JSONValue.double(v).serialized() : "\(v)" }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func number(_ v: Double, _ key: CodingKeys) throws { try c.encode(JSONValue.metric(v), forKey: key) }
        try c.encode(passed, forKey: .passed)
        try c.encode(thresholds, forKey: .thresholds)
        try number(maxAbsDiff, .maxAbsDiff)
        try number(meanKL, .meanKL)
        try number(top1Agreement, .top1Agreement)
        try c.encode(probes, forKey: .probes)
        try c.encode(seqLen, forKey: .seqLen)
        if let data { try c.encode(data, forKey: .data) }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func number(_ key: CodingKeys) throws -> Double {
            if let v = try? c.decode(Double.self, forKey: key) { return v }
            return Double(try c.decode(String.self, forKey: key)) ?? .nan
        }
        passed = try c.decode(Bool.self, forKey: .passed)
        thresholds = try c.decode(String.self, forKey: .thresholds)
        maxAbsDiff = try number(.maxAbsDiff)
        meanKL = try number(.meanKL)
        top1Agreement = try number(.top1Agreement)
        probes = try c.decode(Int.self, forKey: .probes)
        seqLen = try c.decode(Int.self, forKey: .seqLen)
        data = try c.decodeIfPresent(ParityData.self, forKey: .data)
    }
}

/// How a parity run probes and judges (`verify --parity`, `convert --parity`): the probes and the limits that replace
/// the defaults of the bundle's kind.
public struct ParityRequest: Sendable {
    public var probes = 8
    /// Tokens per probe (nil: min(max_position_embeddings, 64)).
    public var sequenceLength: Int?
    public var seed: UInt64 = 0
    /// A safetensors file of probe ids (I64 [N, L]) instead of random ones.
    public var probeIDsFile: String?
    /// Token shards (`--tokens`): the first `probes` sequences of `sequenceLength` ids (default: the model's positions)
    /// are the probes, and the report gains the release's quality on them.
    public var tokens: String?
    /// The dtype of raw memmap shards.
    public var tokenDType: TokenDType?
    public var maxAbsDiff: Double?
    public var maxMeanKL: Double?
    public var minTop1: Double?

    public init() {}

    /// A request that cannot run on this model (a usage error: exit 64).
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Runs `bundle` against `source`; explicit limits replace the defaults of the bundle's kind.
    public func run(bundle: ReleaseModel, source: ReleaseModel) throws -> ParityReport {
        if let l = sequenceLength, l > bundle.config.maxPositions {
            throw Problem(description: "--seq-len \(l) is more than the model's max_position_embeddings (\(bundle.config.maxPositions))")
        }
        var t = Parity.defaultThresholds(bundle: bundle, source: source)
        if maxAbsDiff != nil || maxMeanKL != nil || minTop1 != nil {
            t.overridden = true
            if let v = maxAbsDiff { t.maxAbsDiff = v }
            if let v = maxMeanKL { t.maxMeanKL = v }
            if let v = minTop1 { t.minTop1 = v }
        }
        guard let tokens else {
            return try Parity.run(bundle: bundle, against: source, probes: probes, length: sequenceLength, seed: seed,
                                  probeIDs: try probeIDsFile.map(Parity.probeIDs(file:)), thresholds: t)
        }
        let c = bundle.config
        let length = sequenceLength ?? c.maxPositions
        let shards = try TokenShards(path: tokens, rawDType: tokenDType, sequenceLength: length)
        let runs = try EvaluationRequest.select(shards, positions: length, causal: c.causal, count: nil, seed: nil).filter { $0.count == length }
        guard !runs.isEmpty else { throw Problem(description: "--tokens \(tokens): no sequence of \(length) ids (--seq-len sets the length)") }
        let ids = try runs.prefix(probes).map { try shards.ids(of: $0, vocabulary: c.vocabSize) }
        var scores = TokenScores()
        var report = try Parity.run(bundle: bundle, against: source, probes: ids.count, length: length, seed: seed, probeIDs: ids, thresholds: t,
                                    scores: &scores)
        let stats = EvalStatistics(scores)
        report.data = ParityData(shards: try EvaluationRequest.describe(shards), sequences: ids.count, tokens: stats.tokens,
                                 referencePerplexity: stats.reference?.referencePerplexity?.value, perplexity: stats.perplexity?.value,
                                 meanKL: stats.reference?.kld.value ?? 0, sameTopP: stats.reference?.sameTop.value ?? 0,
                                 deltaPRMS: stats.reference?.pDiffRMS?.value)
        return report
    }

    /// The source at `path` opened with `bundle`'s config (so a DCP folder or a config-less checkpoint needs nothing
    /// more): not its dropout, which a GPT-2 export sets to 0 whatever the source trained with and no logit depends on.
    public static func openSource(_ path: String, for bundle: ReleaseModel) throws -> ReleaseModel {
        let members = bundle.config.hfJSON(torchDtype: "float32").members?.filter { $0.key != "dropout" } ?? []
        return try ReleaseModel(path: path, config: (.object(members), "the bundle's config.json"), allowUntied: !bundle.tied)
    }
}

/// Runs parity checks (docs/bundle.md, Parity).
public enum Parity {
    /// `count` sequences of `length` token ids drawn uniformly from the vocabulary by SplitMix64 from `seed`.
    public static func probes(count: Int, length: Int, vocab: Int, seed: UInt64) -> [[Int]] {
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        return (0..<count).map { _ in (0..<length).map { _ in Int(next() % UInt64(vocab)) } }
    }

    /// The bundle against the model it was converted from: same probes through both forward passes.
    /// `probeIDs` (e.g. held-out text), when given, replace the random probes.
    public static func run(bundle: ReleaseModel, against source: ReleaseModel, probes count: Int, length: Int?, seed: UInt64,
                           probeIDs: [[Int]]? = nil, thresholds override: ParityThresholds? = nil,
                           batchLogitBytes: Int = Parity.batchLogitBytes) throws -> ParityReport {
        var unused = TokenScores()
        return try run(bundle: bundle, against: source, probes: count, length: length, seed: seed, probeIDs: probeIDs, thresholds: override,
                       batchLogitBytes: batchLogitBytes, scores: &unused, scoring: false)
    }

    /// `run`, also scoring each probe position into `scores` (the statistics of `arapack eval`) when `scoring`.
    static func run(bundle: ReleaseModel, against source: ReleaseModel, probes count: Int, length: Int?, seed: UInt64,
                    probeIDs: [[Int]]?, thresholds override: ParityThresholds?, batchLogitBytes: Int = Parity.batchLogitBytes,
                    scores: inout TokenScores, scoring: Bool = true) throws -> ParityReport {
        // The same function, not the same config: a GPT-2 export sets the training-only dropout to 0.
        let differences = bundle.config.functionDifferences(from: source.config)
        guard differences.isEmpty else {
            throw ParityError.configsDiffer(bundle: bundle.info.path, source: source.info.path, differences: differences)
        }
        let c = bundle.config
        // A length past the positions is refused, not shortened (and before any probe is drawn).
        let L = probeIDs?.first?.count ?? length ?? min(c.maxPositions, 64)
        guard L <= c.maxPositions else {
            throw ParityError.probeTooLong(length: L, limit: c.maxPositions)
        }
        guard L > 0, count > 0 else { throw ParityError.noProbes(bundle: bundle.info.path) }
        let ids = probeIDs ?? probes(count: count, length: L, vocab: c.vocabSize, seed: seed)
        // One model after the other: the reference's logits for a batch of probes, its pass dropped (and its mapped
        // pages), then the candidate's. Only one model's weights are resident at a time, plus two batches of logits.
        func logits(_ model: ReleaseModel, _ batch: [[Int]]) throws -> [Float] {
            let pass = try ForwardPass(model)
            defer { pass.discardMappedPages() }
            return try pass.logits(batch)
        }
        var acc = ParityMetrics.Accumulator(vocab: c.vocabSize, causal: c.causal)
        for batch in batches(ids, vocab: c.vocabSize, bytes: batchLogitBytes) {
            let reference = try logits(source, batch)
            let candidate = try logits(bundle, batch)
            acc.add(reference: reference, candidate: candidate, ids: batch)
            if scoring { scores.add(model: candidate, reference: reference, ids: batch, vocab: c.vocabSize, causal: c.causal) }
        }
        let metrics = acc.metrics
        let thresholds = override ?? defaultThresholds(bundle: bundle, source: source)
        var report = ParityReport(bundle: bundle.info.path, reference: source.info.path, referenceKind: "source",
                                  bundleDType: bundle.weightTypeName,
                                  probes: ids.count, sequenceLength: L, seed: probeIDs == nil ? seed : nil, metrics: metrics, thresholds: thresholds,
                                  failures: thresholds.failures(metrics))
        report.form = bundle.formTitle
        if !report.passed && thresholds.kind == .lossless { report.differingTensors = try differingTensors(bundle, source) }
        return report
    }

    /// Logits held at once per side: probes run in batches whose logits fit (at least one sequence), so a
    /// parity run's memory is one model's weights (the reference's pass is dropped before the candidate's is
    /// built) plus two batches of logits and one batch's activations, whatever --probes says (a full-size
    /// sequence of 512 tokens has 157 MB of logits; the default 8 × 64 probes fit one batch).
    public static let batchLogitBytes = 256 << 20

    /// `ids` cut into batches of whole sequences whose float32 logits stay under `batchLogitBytes`.
    static func batches(_ ids: [[Int]], vocab: Int, bytes: Int) -> [[[Int]]] {
        let perSequence = max(1, (ids.first?.count ?? 1) * vocab * 4)
        let size = max(1, bytes / perSequence)
        return stride(from: 0, to: ids.count, by: size).map { Array(ids[$0..<min($0 + size, ids.count)]) }
    }

    /// Lossless (same dtype as the source) must be bit-identical; a cast has the defaults of its dtype.
    public static func defaultThresholds(bundle: ReleaseModel, source: ReleaseModel) -> ParityThresholds {
        if bundle.weightTypeName == "q8_0" { return .q8_0 }
        guard bundle.dominantDType == source.dominantDType else { return .cast(bundle.dominantDType) }
        return bundle.computesLlamaCppGELU == source.computesLlamaCppGELU ? .lossless : .gguf
    }

    /// The bundle against golden logits (`ids` I64 [N, L], `logits` F32 [N, L, V]).
    public static func golden(bundle: ReleaseModel, goldenPath: String, tolerance: Double,
                              batchLogitBytes: Int = Parity.batchLogitBytes) throws -> ParityReport {
        let file = try SafetensorsFile(path: goldenPath)
        let idsTensor = try file.tensor(named: "ids"), logitsTensor = try file.tensor(named: "logits")
        let c = bundle.config
        guard idsTensor.dtype == .i64, idsTensor.shape.count == 2, logitsTensor.dtype == .f32,
              logitsTensor.shape == idsTensor.shape + [c.vocabSize] else {
            throw ParityError.goldenLayout(file: goldenPath, vocabSize: c.vocabSize)
        }
        let ids = try readIDs(idsTensor, file: goldenPath)
        let pass = try ForwardPass(bundle)
        var acc = ParityMetrics.Accumulator(vocab: c.vocabSize, causal: c.causal)
        var start = 0
        for batch in batches(ids, vocab: c.vocabSize, bytes: batchLogitBytes) {
            let range = (start * batch[0].count * c.vocabSize)..<((start + batch.count) * batch[0].count * c.vocabSize)
            let golden = logitsTensor.withUnsafeBytes { Array($0.bindMemory(to: Float.self)[range]) }
            acc.add(reference: golden, candidate: try pass.logits(batch), ids: batch)
            start += batch.count
        }
        let metrics = acc.metrics
        let thresholds = ParityThresholds.golden(tolerance: tolerance)
        var report = ParityReport(bundle: bundle.info.path, reference: goldenPath, referenceKind: "golden",
                                  bundleDType: bundle.weightTypeName,
                                  probes: ids.count, sequenceLength: ids[0].count, seed: nil, metrics: metrics, thresholds: thresholds,
                                  failures: thresholds.failures(metrics))
        report.form = bundle.formTitle
        return report
    }

    /// Token-id sequences from an I64 [N, L] tensor.
    public static func readIDs(_ t: Tensor, file: String) throws -> [[Int]] {
        guard t.dtype == .i64 || t.dtype == .i32, t.shape.count == 2, t.shape[0] > 0, t.shape[1] > 0 else {
            throw ParityError.idsLayout(file: file, dtype: t.dtype, shape: t.shape)
        }
        let flat = t.dtype == .i64 ? try t.integers(as: Int64.self).map(Int.init) : try t.integers(as: Int32.self).map(Int.init)
        let L = t.shape[1]
        return stride(from: 0, to: flat.count, by: L).map { Array(flat[$0..<($0 + L)]) }
    }

    /// The `ids` tensor of a safetensors file (a probe file or a golden file).
    public static func probeIDs(file: String) throws -> [[Int]] {
        try readIDs(try SafetensorsFile(path: file).tensor(named: "ids"), file: file)
    }

    /// Release names of the tensors whose bits differ between two models of the same config.
    static func differingTensors(_ a: ReleaseModel, _ b: ReleaseModel) throws -> [String] {
        var out: [String] = []
        for (training, _) in a.names {
            let x = try a.tensor(training), y = try b.tensor(training)
            guard !x.isBitIdentical(to: y) else { continue }
            var count = 0
            if x.dtype == y.dtype, x.shape == y.shape {
                x.withUnsafeBytes { p in y.withUnsafeBytes { q in
                    let size = x.dtype.byteSize
                    for e in 0..<x.elementCount where memcmp(p.baseAddress! + e * size, q.baseAddress! + e * size, size) != 0 { count += 1 }
                } }
            }
            out.append("\(ModelFamily.releasePrefix)\(training) (\(count) element\(count == 1 ? "" : "s"))")
        }
        return out
    }
}

/// A parity run that cannot start: the two sides or the probes do not fit.
public enum ParityError: Error, Equatable, CustomStringConvertible, Sendable {
    case configsDiffer(bundle: String, source: String, differences: [String])
    case probeTooLong(length: Int, limit: Int)
    case noProbes(bundle: String)
    case goldenLayout(file: String, vocabSize: Int)
    case idsLayout(file: String, dtype: DType, shape: [Int])

    public var description: String {
        switch self {
        case let .configsDiffer(bundle, source, differences):
            return "\(bundle): the bundle computes another function than \(source) (\(differences.joined(separator: ", "))); parity compares the same model"
        case let .probeTooLong(length, limit): return "parity: probe length \(length) exceeds max_position_embeddings \(limit)"
        case let .noProbes(bundle): return "\(bundle): --probes and --seq-len must be positive"
        case let .goldenLayout(file, vocab): return "\(file): a golden file holds ids (I64 [N, L]) and logits (F32 [N, L, \(vocab)])"
        case let .idsLayout(file, dtype, shape): return "\(file): ids must be an I64 (or I32) tensor [N, L], found \(dtype.name) \(shape)"
        }
    }
}

/// The data a parity run probed with `--tokens`, and the release's quality on it: the card's quality table, the
/// manifest's and the signed provenance's record of what was measured.
public struct ParityData: Codable, Equatable, Sendable {
    public var shards: [EvaluationPart.Shard]
    public var sequences: Int
    /// Positions scored (next-token positions for a causal model, every position for a bidirectional one).
    public var tokens: Int
    /// Perplexity of the source and of the release on the data (nil for a bidirectional model).
    public var referencePerplexity: Double?
    public var perplexity: Double?
    public var meanKL: Double
    public var sameTopP: Double
    public var deltaPRMS: Double?

    enum CodingKeys: String, CodingKey {
        case shards, sequences, tokens, referencePerplexity = "perplexity_source", perplexity = "perplexity_release", meanKL = "mean_kl"
        case sameTopP = "same_top_p", deltaPRMS = "delta_p_rms"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(shards, forKey: .shards)
        try c.encode(sequences, forKey: .sequences)
        try c.encode(tokens, forKey: .tokens)
        try c.encodeOrNull(referencePerplexity.map(JSONValue.metric), forKey: .referencePerplexity)
        try c.encodeOrNull(perplexity.map(JSONValue.metric), forKey: .perplexity)
        try c.encode(JSONValue.metric(meanKL), forKey: .meanKL)
        try c.encode(JSONValue.metric(sameTopP), forKey: .sameTopP)
        try c.encodeOrNull(deltaPRMS.map(JSONValue.metric), forKey: .deltaPRMS)
    }

    /// The report's lines about the data.
    var lines: [String] {
        ["data         " + shards.map { "\($0.file) (sha256 \($0.sha256.prefix(12))…)" }.joined(separator: ", ") + ": \(sequences) sequences, \(tokens) tokens scored",
         "on the data  " + (perplexity.map { "perplexity \(metricText(referencePerplexity ?? .nan)) (source) / \(metricText($0)) (release), " } ?? "")
            + "mean KL \(metricText(meanKL)), same top p \(metricText(sameTopP))" + (deltaPRMS.map { ", RMS Δp \(metricText($0))" } ?? "")]
    }
}
