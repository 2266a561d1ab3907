import ArapackFormats
import ArapackTensor
import CKernels
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Logit-parity metrics of docs/bundle.md between a reference (the source, or golden logits) and a candidate.
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

        /// What one position contributes: its sums over the vocabulary, its log-partitions and KL, and its arg-maxes.
        struct Row {
            var maxAbs = 0.0, sq = 0.0, sum = 0.0, sumSq = 0.0
            var stats = (0.0, 0.0, 0.0)
            var argmaxA = 0, argmaxB = 0
        }

        /// Adds the logits of the sequences `ids` ([ids.count × L × vocab] on each side). Each position is computed
        /// whole by one thread (the positions are shared among the cores), then the positions are added in order:
        /// the same bits whatever the thread count.
        public mutating func add(reference a: [Float], candidate b: [Float], ids: [[Int]], threads: Int = ForwardPass.defaultThreads) {
            precondition(a.count == b.count && a.count % vocab == 0)
            let count = a.count / vocab, vocab = vocab
            var rows = [Row](repeating: Row(), count: count)
            a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in rows.withUnsafeMutableBufferPointer { out in
                nonisolated(unsafe) let (pa, pb, out) = (pa, pb, out)
                let parts = min(max(threads, 1), max(count, 1))
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    for p in (count * part / parts)..<(count * (part + 1) / parts) {
                        let ra = UnsafeBufferPointer(rebasing: pa[(p * vocab)..<((p + 1) * vocab)])
                        let rb = UnsafeBufferPointer(rebasing: pb[(p * vocab)..<((p + 1) * vocab)])
                        var row = Row()
                        for i in 0..<vocab {
                            let x = Double(ra[i]), y = Double(rb[i])
                            let dlt = (x - y).isNaN ? Double.infinity : abs(x - y)
                            row.maxAbs = max(row.maxAbs, dlt)
                            row.sq += (x - y) * (x - y)
                            row.sum += x
                            row.sumSq += x * x
                        }
                        // log-partitions and KL(a ‖ b) by CKernels' own exp and log: the same bits on every CPU.
                        var stats = [0.0, 0.0, 0.0]
                        arapack_softmax_kl(ra.baseAddress!, rb.baseAddress!, vocab, &stats)
                        row.stats = (stats[0], stats[1], stats[2])
                        (row.argmaxA, row.argmaxB) = (ParityMetrics.argmax(ra), ParityMetrics.argmax(rb))
                        out[p] = row
                    }
                }
            } } }
            let length = ids.first?.count ?? 0
            for (p, row) in rows.enumerated() {
                maxAbs = max(maxAbs, row.maxAbs)
                sq += row.sq
                sum += row.sum
                sumSq += row.sumSq
                let kl = max(row.stats.2, 0)
                klSum += kl
                klMax = max(klMax, kl)
                if row.argmaxA == row.argmaxB { agree += 1 }
                let s = p / max(length, 1), i = p % max(length, 1)
                let target: Int? = causal ? (i + 1 < length ? ids[s][i + 1] : nil) : ids[s][i]
                if let t = target {
                    nllA -= Double(a[p * vocab + t]) - row.stats.0
                    nllB -= Double(b[p * vocab + t]) - row.stats.1
                    scored += 1
                }
            }
            n += Double(a.count)
            positions += count
        }

        public var metrics: ParityMetrics {
            let variance = max(sumSq / max(n, 1) - (sum / max(n, 1)) * (sum / max(n, 1)), .leastNormalMagnitude)
            let count = Double(max(positions, 1))
            return ParityMetrics(maxAbsDiff: maxAbs, nmse: sq / max(n, 1) / variance, meanKL: klSum / count, maxKL: klMax,
                                 top1Agreement: Double(agree) / count,
                                 referencePerplexity: arapack_exp(nllA / Double(max(scored, 1))), candidatePerplexity: arapack_exp(nllB / Double(max(scored, 1))),
                                 positions: positions)
        }
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
        case bf16, f16, int8, int4
        /// GGUF's Q8_0 blocks (32 int8 with a float16 scale), with llama.cpp's GELU.
        case q8_0
        /// GGUF's 6-, 5- and 4-bit files (Q6_K; Q5_0, Q5_K, Q5_K_M; Q4_0, Q4_K, Q4_K_M), with llama.cpp's GELU.
        case q6_k, q5, q4
        /// Against logits computed elsewhere.
        case golden
        /// A GGUF file in the source's dtype against the source: the same weights, llama.cpp's GELU on one side.
        case gguf
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
        default: return ParityThresholds(kind: .bf16, maxAbsDiff: nil, maxMeanKL: 1e-3, minTop1: 0.95)
        }
    }

    /// An int8 bundle (the layers' nn.Linear weights quantized; measured above).
    public static let int8 = ParityThresholds(kind: .int8, maxAbsDiff: nil, maxMeanKL: 1e-2, minTop1: 0.90)

    /// An int4 (W4A16) bundle: GGUF's 4-bit limits, with margin above the trained twin's held-out text against its
    /// checkpoint (`arapack eval`, all 276 sequences; d 64 takes no group of 128): mean KL 0.225 and top-1 0.634 with
    /// groups of 32, 0.320 and 0.576 per channel (BENCHMARKS.md, "int4 bundles"). A model this small loses far more
    /// at 4 bits than a 381M one does.
    public static let int4 = ParityThresholds(kind: .int4, maxAbsDiff: nil, maxMeanKL: 0.5, minTop1: 0.5)

    /// llama.cpp's GELU against exact GELU on the same weights: measured on the trained twin mean KL 8e-7 and top-1 1.0
    /// (README, "GGUF").
    public static let gguf = ParityThresholds(kind: .gguf, maxAbsDiff: nil, maxMeanKL: 1e-5, minTop1: 0.99)

    /// A GGUF file of Q8_0 blocks against its source: the int8 limits (measured on the trained twin: mean KL 2.3e-3,
    /// top-1 0.951 through llama.cpp itself).
    public static let q8_0 = ParityThresholds(kind: .q8_0, maxAbsDiff: nil, maxMeanKL: 1e-2, minTop1: 0.90)

    /// GGUF files of fewer bits: limits that grow as the bits shrink, with margin above llama.cpp's own logits on the
    /// trained twin's held-out text against its checkpoint (d 64, so most rows fall back from super-blocks of 256 to
    /// blocks of 32; BENCHMARKS.md, "GGUF block types"): mean KL 4.9e-3 and top-1 0.930 (q6_k), 0.078 and 0.762
    /// (q5_0, the worst 5-bit), 0.305 and 0.589 (q4_0, the worst 4-bit). A larger model loses far less (d 256:
    /// q4_k_m 8.4e-4).
    public static let q6_k = ParityThresholds(kind: .q6_k, maxAbsDiff: nil, maxMeanKL: 2e-2, minTop1: 0.85)
    public static let q5 = ParityThresholds(kind: .q5, maxAbsDiff: nil, maxMeanKL: 0.2, minTop1: 0.65)
    public static let q4 = ParityThresholds(kind: .q4, maxAbsDiff: nil, maxMeanKL: 0.5, minTop1: 0.5)

    /// Against logits computed elsewhere: an absolute tolerance.
    public static func golden(tolerance: Double) -> ParityThresholds {
        ParityThresholds(kind: .golden, maxAbsDiff: tolerance, maxMeanKL: nil, minTop1: nil)
    }

    /// The kind as reports print it: `lossless`, `bf16 (overridden)`, ….
    public var label: String { kind.rawValue + (overridden ? " (overridden)" : "") }

    /// What fails, one phrase each.
    public func failures(_ m: ParityMetrics) -> [String] {
        var out: [String] = []
        if let t = maxAbsDiff, !(m.maxAbsDiff <= t) { out.append("max |Δlogit| \(metricText(m.maxAbsDiff)) > \(metricText(t))") }
        if let t = maxMeanKL, !(m.meanKL <= t) { out.append("mean KL \(metricText(m.meanKL)) > \(metricText(t))") }
        if let t = minTop1, !(m.top1Agreement >= t) { out.append("top-1 agreement \(metricText(m.top1Agreement)) < \(metricText(t))") }
        return out
    }
}

/// Six significant digits for ordinary magnitudes, `1.23e-05` style otherwise.
public func metricText(_ v: Double) -> String {
    if v == 0 { return "0" }
    if !v.isFinite { return "\(v)" }
    let exponent = Int(floor(log10(abs(v))))
    if exponent >= -3 && exponent < 6 {
        let digits = max(0, min(6 - exponent - 1, 9))
        let p = Double("1e\(digits)")!  // exact, where pow's last bit may depend on the C library's build
        var text = "\((v * p).rounded() / p)"
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }
    let mantissa = (v / pow(10.0, Double(exponent)) * 100).rounded() / 100
    return "\(mantissa)e\(exponent < 0 ? "-" : "+")\(abs(exponent) < 10 ? "0" : "")\(abs(exponent))"
}

/// The metrics as the parity report writes them (keys spelled here once; a non-finite metric by its name).
extension ParityMetrics: Encodable {
    enum CodingKeys: String, CodingKey {
        case maxAbsDiff = "max_abs_diff", nmse, meanKL = "mean_kl", maxKL = "max_kl", top1Agreement = "top1_agreement"
        case referencePerplexity = "perplexity_reference", candidatePerplexity = "perplexity_bundle", positions
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        for (value, key) in [(maxAbsDiff, CodingKeys.maxAbsDiff), (nmse, .nmse), (meanKL, .meanKL), (maxKL, .maxKL), (top1Agreement, .top1Agreement),
                             (referencePerplexity, .referencePerplexity), (candidatePerplexity, .candidatePerplexity)] {
            try c.encode(JSONValue.metric(value), forKey: key)
        }
        try c.encode(positions, forKey: .positions)
    }
}

/// The limits as the parity report writes them (null where a kind sets none).
extension ParityThresholds: Encodable {
    enum CodingKeys: String, CodingKey { case kind, maxAbsDiff = "max_abs_diff", maxMeanKL = "max_mean_kl", minTop1 = "min_top1" }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(label, forKey: .kind)
        for (value, key) in [(maxAbsDiff, CodingKeys.maxAbsDiff), (maxMeanKL, .maxMeanKL), (minTop1, .minTop1)] {
            try c.encodeOrNull(value.map(JSONValue.metric), forKey: key)
        }
    }
}
