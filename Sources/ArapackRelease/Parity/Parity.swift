import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Runs parity checks (docs/bundle.md, Parity).
public enum Parity {
    /// `count` sequences of `length` token ids drawn uniformly from the vocabulary by SplitMix64 from `seed`.
    public static func probes(count: Int, length: Int, vocab: Int, seed: UInt64) -> [[Int]] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in (0..<length).map { _ in Int(random.next() % UInt64(vocab)) } }
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
            let reference = try source.logits(of: batch) { try logits(source, batch) }
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
        if let scheme = bundle.ggufScheme, scheme.quantizes { return .gguf(scheme) }
        if let q = bundle.quantization, q != source.quantization { return q.scheme.parityThresholds }
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
