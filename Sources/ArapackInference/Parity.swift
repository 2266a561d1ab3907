import ArapackFormats
import ArapackRelease
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Logit-parity metrics of BUNDLE.md between a reference (the source, or golden logits) and a candidate.
public struct ParityMetrics: Equatable, Sendable {
    public var maxAbsDiff: Double
    /// Mean squared error over the variance of the reference logits.
    public var nmse: Double
    /// KL(reference ‖ candidate) of the softmax distributions, mean and max over positions.
    public var meanKL: Double
    public var maxKL: Double
    /// Fraction of positions whose arg-max token agrees.
    public var top1Agreement: Double
    /// Perplexity of each side on the probes (next-token for causal models, same-position otherwise).
    public var referencePerplexity: Double
    public var candidatePerplexity: Double
    public var positions: Int

    /// Computes the metrics over `ids.count × L` positions of `vocab` logits each.
    public static func compare(reference a: [Float], candidate b: [Float], ids: [[Int]], vocab: Int, causal: Bool) -> ParityMetrics {
        var acc = Accumulator(vocab: vocab, causal: causal)
        acc.add(reference: a, candidate: b, ids: ids)
        return acc.metrics
    }

    /// The metrics gathered batch by batch (every statistic is a sum, a count or a maximum), so a parity run
    /// holds the logits of one batch of probes at a time, not of all of them.
    public struct Accumulator {
        let vocab: Int, causal: Bool
        var maxAbs = 0.0, sq = 0.0, sum = 0.0, sumSq = 0.0, n = 0.0
        var klSum = 0.0, klMax = 0.0, agree = 0, positions = 0
        var nllA = 0.0, nllB = 0.0, scored = 0

        public init(vocab: Int, causal: Bool) {
            self.vocab = vocab
            self.causal = causal
        }

        /// Adds the logits of the sequences `ids` ([ids.count × L × vocab] on each side).
        public mutating func add(reference a: [Float], candidate b: [Float], ids: [[Int]]) {
            precondition(a.count == b.count && a.count % vocab == 0)
            let count = a.count / vocab
            for i in 0..<a.count {
                let x = Double(a[i]), y = Double(b[i])
                let dlt = (x - y).isNaN ? Double.infinity : abs(x - y)
                maxAbs = max(maxAbs, dlt)
                sq += (x - y) * (x - y)
                sum += x
                sumSq += x * x
            }
            n += Double(a.count)
            let length = ids.first?.count ?? 0
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            for p in 0..<count {
                let ra = UnsafeBufferPointer(rebasing: pa[(p * vocab)..<((p + 1) * vocab)])
                let rb = UnsafeBufferPointer(rebasing: pb[(p * vocab)..<((p + 1) * vocab)])
                let la = logSoftmax(ra), lb = logSoftmax(rb)
                var kl = 0.0
                for v in 0..<vocab { kl += exp(la[v]) * (la[v] - lb[v]) }
                kl = max(kl, 0)
                klSum += kl
                klMax = max(klMax, kl)
                if argmax(ra) == argmax(rb) { agree += 1 }
                let s = p / max(length, 1), i = p % max(length, 1)
                let target: Int? = causal ? (i + 1 < length ? ids[s][i + 1] : nil) : ids[s][i]
                if let t = target {
                    nllA -= la[t]
                    nllB -= lb[t]
                    scored += 1
                }
            }
            } }
            positions += count
        }

        public var metrics: ParityMetrics {
            let variance = max(sumSq / max(n, 1) - (sum / max(n, 1)) * (sum / max(n, 1)), .leastNormalMagnitude)
            let count = Double(max(positions, 1))
            return ParityMetrics(maxAbsDiff: maxAbs, nmse: sq / max(n, 1) / variance, meanKL: klSum / count, maxKL: klMax,
                                 top1Agreement: Double(agree) / count,
                                 referencePerplexity: exp(nllA / Double(max(scored, 1))), candidatePerplexity: exp(nllB / Double(max(scored, 1))),
                                 positions: positions)
        }
    }

    static func logSoftmax(_ row: UnsafeBufferPointer<Float>) -> [Double] {
        var top = -Double.infinity
        for x in row { top = max(top, Double(x)) }
        var total = 0.0
        for x in row { total += exp(Double(x) - top) }
        let logTotal = top + Glibc.log(total)
        return row.map { Double($0) - logTotal }
    }

    static func argmax(_ row: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<row.count where row[i] > row[best] { best = i }
        return best
    }
}

/// Pass/fail limits for a parity run.
public struct ParityThresholds: Equatable, Sendable {
    /// What the limits are for.
    public enum Kind: String, Sendable {
        /// Bit-identical required (the bundle keeps the source's dtype).
        case lossless
        case bf16, f16, int8
        /// Against logits computed elsewhere.
        case golden
    }
    public var kind: Kind
    /// Whether a flag replaced some of the kind's default limits.
    public var overridden = false
    public var maxAbsDiff: Double?
    public var maxMeanKL: Double?
    public var minTop1: Double?

    /// Lossless conversions must be bit-identical.
    public static let lossless = ParityThresholds(kind: .lossless, maxAbsDiff: 0, maxMeanKL: nil, minTop1: nil)

    /// Defaults for a narrowed or quantized bundle, set with margin from measurements on a model trained on
    /// Arabic text (Fixtures/trained, held-out text; BENCHMARKS.md): mean KL measured 2.0e-4 (bf16), 3.0e-6
    /// (f16), 1.6e-3 (int8 per channel); top-1 agreement 0.988, 0.9985, 0.966.
    public static func cast(_ dtype: DType) -> ParityThresholds {
        switch dtype {
        case .f16: return ParityThresholds(kind: .f16, maxAbsDiff: nil, maxMeanKL: 3e-5, minTop1: 0.99)
        case .i8: return ParityThresholds(kind: .int8, maxAbsDiff: nil, maxMeanKL: 1e-2, minTop1: 0.90)
        default: return ParityThresholds(kind: .bf16, maxAbsDiff: nil, maxMeanKL: 1e-3, minTop1: 0.95)
        }
    }

    /// Against logits computed elsewhere: an absolute tolerance.
    public static func golden(tolerance: Double) -> ParityThresholds {
        ParityThresholds(kind: .golden, maxAbsDiff: tolerance, maxMeanKL: nil, minTop1: nil)
    }

    /// The kind as reports print it: `lossless`, `bf16 (overridden)`, ….
    public var label: String { kind.rawValue + (overridden ? " (overridden)" : "") }

    /// What fails, one phrase each.
    public func failures(_ m: ParityMetrics) -> [String] {
        var out: [String] = []
        if let t = maxAbsDiff, !(m.maxAbsDiff <= t) { out.append("max |Δlogit| \(fmt(m.maxAbsDiff)) > \(fmt(t))") }
        if let t = maxMeanKL, !(m.meanKL <= t) { out.append("mean KL \(fmt(m.meanKL)) > \(fmt(t))") }
        if let t = minTop1, !(m.top1Agreement >= t) { out.append("top-1 agreement \(fmt(m.top1Agreement)) < \(fmt(t))") }
        return out
    }
}

/// A parity run: what was compared, the metrics, the limits, the verdict.
public struct ParityReport: Sendable {
    public var bundle: String
    public var reference: String
    public var referenceKind: String
    public var bundleDType: String
    public var probes: Int
    public var sequenceLength: Int
    public var seed: UInt64?
    public var metrics: ParityMetrics
    public var thresholds: ParityThresholds
    public var failures: [String]
    /// For a failed lossless run: the tensors whose bits differ from the reference's.
    public var differingTensors: [String] = []
    public var passed: Bool { failures.isEmpty }

    /// The summary a bundle's card, manifest and signed provenance record of a parity run before release.
    public var summary: JSONValue {
        func number(_ v: Double) -> JSONValue { v.isFinite ? .double(v) : .string("\(v)") }
        return .object([
            .init("passed", .bool(passed)), .init("thresholds", .string(thresholds.label)),
            .init("max_abs_diff", number(metrics.maxAbsDiff)), .init("mean_kl", number(metrics.meanKL)),
            .init("top1_agreement", number(metrics.top1Agreement)),
            .init("probes", .int(probes)), .init("seq_len", .int(sequenceLength)),
        ])
    }

    public var text: String {
        let m = metrics
        var lines = [
            "parity \(bundle) against \(referenceKind) \(reference)",
            "probes       \(probes) × \(sequenceLength) tokens" + (seed.map { ", seed \($0)" } ?? ""),
            "dtype        \(bundleDType) (thresholds: \(thresholds.label))",
            "max |Δlogit| \(fmt(m.maxAbsDiff))" + (thresholds.maxAbsDiff.map { "   limit \(fmt($0))" } ?? ""),
            "NMSE         \(fmt(m.nmse))",
            "KL mean/max  \(fmt(m.meanKL)) / \(fmt(m.maxKL))" + (thresholds.maxMeanKL.map { "   limit mean \(fmt($0))" } ?? ""),
            "top-1 agree  \(fmt(m.top1Agreement))" + (thresholds.minTop1.map { "   limit \(fmt($0))" } ?? ""),
            "perplexity   \(fmt(m.referencePerplexity)) (reference) / \(fmt(m.candidatePerplexity)) (bundle)",
        ]
        if !differingTensors.isEmpty { lines.append("differs      " + differingTensors.joined(separator: ", ")) }
        lines.append(passed ? "parity passed" : "parity FAILED: " + failures.joined(separator: "; "))
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }

    public var json: JSONValue {
        let m = metrics
        func num(_ v: Double) -> JSONValue { v.isFinite ? .double(v) : .string("\(v)") }
        func opt(_ v: Double?) -> JSONValue { v.map(num) ?? .null }
        return .object([
            .init("bundle", .string(bundle)),
            .init("reference", .object([.init("kind", .string(referenceKind)), .init("path", .string(reference))])),
            .init("bundle_dtype", .string(bundleDType)),
            .init("probes", .int(probes)),
            .init("seq_len", .int(sequenceLength)),
            .init("seed", seed.map { .number(String($0)) } ?? .null),
            .init("metrics", .object([
                .init("max_abs_diff", num(m.maxAbsDiff)), .init("nmse", num(m.nmse)),
                .init("mean_kl", num(m.meanKL)), .init("max_kl", num(m.maxKL)),
                .init("top1_agreement", num(m.top1Agreement)),
                .init("perplexity_reference", num(m.referencePerplexity)), .init("perplexity_bundle", num(m.candidatePerplexity)),
                .init("positions", .int(m.positions)),
            ])),
            .init("thresholds", .object([
                .init("kind", .string(thresholds.label)), .init("max_abs_diff", opt(thresholds.maxAbsDiff)),
                .init("max_mean_kl", opt(thresholds.maxMeanKL)), .init("min_top1", opt(thresholds.minTop1)),
            ])),
            .init("differing_tensors", .array(differingTensors.map { .string($0) })),
            .init("passed", .bool(passed)),
            .init("failures", .array(failures.map { .string($0) })),
        ])
    }
}

/// Runs parity checks (BUNDLE.md, Parity).
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
        guard bundle.config == source.config else {
            throw ModelError(bundle.info.path, "the bundle's config differs from \(source.info.path)'s; parity compares the same model")
        }
        let c = bundle.config
        // A length past the positions is refused, not shortened (and before any probe is drawn).
        let L = probeIDs?.first?.count ?? length ?? min(c.maxPositions, 64)
        guard L <= c.maxPositions else {
            throw ModelError("parity", "probe length \(L) exceeds max_position_embeddings \(c.maxPositions)")
        }
        guard L > 0, count > 0 else { throw ModelError(bundle.info.path, "--probes and --seq-len must be positive") }
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
            acc.add(reference: reference, candidate: try logits(bundle, batch), ids: batch)
        }
        let metrics = acc.metrics
        let thresholds = override ?? defaultThresholds(bundle: bundle, source: source)
        var report = ParityReport(bundle: bundle.info.path, reference: source.info.path, referenceKind: "source",
                                  bundleDType: TorchGlobals.dtypeName[bundle.dominantDType] ?? bundle.dominantDType.name,
                                  probes: ids.count, sequenceLength: L, seed: probeIDs == nil ? seed : nil, metrics: metrics, thresholds: thresholds,
                                  failures: thresholds.failures(metrics))
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
        bundle.dominantDType == source.dominantDType ? .lossless : .cast(bundle.dominantDType)
    }

    /// The bundle against golden logits (`ids` I64 [N, L], `logits` F32 [N, L, V]).
    public static func golden(bundle: ReleaseModel, goldenPath: String, tolerance: Double,
                              batchLogitBytes: Int = Parity.batchLogitBytes) throws -> ParityReport {
        let file = try SafetensorsFile(path: goldenPath)
        let idsTensor = try file.tensor(named: "ids"), logitsTensor = try file.tensor(named: "logits")
        let c = bundle.config
        guard idsTensor.dtype == .i64, idsTensor.shape.count == 2, logitsTensor.dtype == .f32,
              logitsTensor.shape == idsTensor.shape + [c.vocabSize] else {
            throw ModelError(goldenPath, "a golden file holds ids (I64 [N, L]) and logits (F32 [N, L, \(c.vocabSize)])")
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
        return ParityReport(bundle: bundle.info.path, reference: goldenPath, referenceKind: "golden",
                            bundleDType: TorchGlobals.dtypeName[bundle.dominantDType] ?? bundle.dominantDType.name,
                            probes: ids.count, sequenceLength: ids[0].count, seed: nil, metrics: metrics, thresholds: thresholds,
                            failures: thresholds.failures(metrics))
    }

    /// Token-id sequences from an I64 [N, L] tensor.
    public static func readIDs(_ t: Tensor, file: String) throws -> [[Int]] {
        guard t.dtype == .i64 || t.dtype == .i32, t.shape.count == 2, t.shape[0] > 0, t.shape[1] > 0 else {
            throw ModelError(file, "ids must be an I64 (or I32) tensor [N, L], found \(t.dtype.name) \(t.shape)")
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

/// Six significant digits for ordinary magnitudes, `1.23e-05` style otherwise.
func fmt(_ v: Double) -> String {
    if v == 0 { return "0" }
    if !v.isFinite { return "\(v)" }
    let exponent = Int(floor(log10(abs(v))))
    if exponent >= -3 && exponent < 6 {
        let digits = max(0, min(6 - exponent - 1, 9))
        let p = pow(10.0, Double(digits))
        var text = "\((v * p).rounded() / p)"
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }
    let mantissa = (v / pow(10.0, Double(exponent)) * 100).rounded() / 100
    return "\(mantissa)e\(exponent < 0 ? "-" : "+")\(abs(exponent) < 10 ? "0" : "")\(abs(exponent))"
}
