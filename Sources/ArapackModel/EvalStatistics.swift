import CKernels

/// What one evaluation scored, token by token, in the order the tokens were scored: the columns every statistic of
/// `EvalStatistics` is computed from (so parts of a run concatenated in order give the same bits as the run).
///
/// A causal model scores each next-token position: `nll` is −ln p(the next id) under the model, and with a reference,
/// `referenceNLL` is the same under the reference, `kld` KL(reference ‖ model) over the vocabulary, `pDiff` the
/// model's probability of the next id minus the reference's, and `sameTop` whether the two argmaxes agree. A
/// bidirectional (MDLM) model has no next-token loss: it scores every position, with `kld` and `sameTop` only.
public struct TokenScores: Equatable, Sendable {
    public var nll: [Double] = []
    public var referenceNLL: [Double] = []
    public var kld: [Double] = []
    public var pDiff: [Double] = []
    public var sameTop: [Bool] = []

    public init() {}

    /// How many positions were scored.
    public var count: Int { max(nll.count, kld.count) }

    /// `other`'s tokens after these.
    public mutating func append(_ other: TokenScores) {
        nll += other.nll
        referenceNLL += other.referenceNLL
        kld += other.kld
        pDiff += other.pDiff
        sameTop += other.sameTop
    }

    /// Scores the logits of `batch` (`[batch.count × L × vocab]` floats per side). `reference` is nil for an
    /// evaluation of the model alone. Every exp and log is CKernels' own, so the columns are the same bits on every CPU.
    public mutating func add(model: [Float], reference: [Float]?, ids batch: [[Int]], vocab: Int, causal: Bool) {
        let length = batch.first?.count ?? 0
        precondition(model.count == batch.count * length * vocab && (reference?.count ?? model.count) == model.count)
        let compared = reference != nil
        let reference = reference ?? model
        model.withUnsafeBufferPointer { pm in reference.withUnsafeBufferPointer { pr in
            var stats = [0.0, 0.0, 0.0]
            for (s, ids) in batch.enumerated() {
                for i in 0..<length {
                    let target: Int? = causal ? (i + 1 < length ? ids[i + 1] : nil) : nil
                    if causal && target == nil { continue }
                    let row = (s * length + i) * vocab
                    let m = UnsafeBufferPointer(rebasing: pm[row..<(row + vocab)]), r = UnsafeBufferPointer(rebasing: pr[row..<(row + vocab)])
                    // stats: ln Z(reference), ln Z(model), KL(reference ‖ model).
                    arapack_softmax_kl(r.baseAddress!, m.baseAddress!, vocab, &stats)
                    if let t = target {
                        let nllModel = stats[1] - Double(m[t]), nllReference = stats[0] - Double(r[t])
                        nll.append(nllModel)
                        if compared {
                            referenceNLL.append(nllReference)
                            pDiff.append(arapack_exp(-nllModel) - arapack_exp(-nllReference))
                        }
                    }
                    if compared {
                        kld.append(stats[2])
                        sameTop.append(ParityMetrics.argmax(m) == ParityMetrics.argmax(r))
                    }
                }
            }
        } }
    }
}

/// A mean and its standard uncertainty.
public struct Estimate: Equatable, Sendable {
    public var value: Double
    public var uncertainty: Double
}

/// The spread of a column: llama-perplexity's percentiles (linear interpolation between sorted values).
public struct Spread: Equatable, Sendable {
    public var maximum: Double
    public var p99_9: Double, p99: Double, p95: Double, p90: Double
    public var median: Double
    public var p10: Double, p5: Double, p1: Double, p0_1: Double
    public var minimum: Double

    /// The spread of `values` (at least one).
    init(_ values: [Double]) {
        let v = values.sorted()
        func at(_ fraction: Double) -> Double {
            let p = fraction * Double(v.count - 1)
            let i = Int(p), f = p - Double(i)
            return (1 - f) * v[i] + f * v[min(i + 1, v.count - 1)]
        }
        let n = v.count
        maximum = v[n - 1]
        (p99_9, p99, p95, p90) = (at(0.999), at(0.99), at(0.95), at(0.9))
        median = n % 2 == 0 ? 0.5 * (v[n / 2] + v[n / 2 - 1]) : v[n / 2]
        (p10, p5, p1, p0_1) = (at(0.1), at(0.05), at(0.01), at(0.001))
        minimum = v[0]
    }

    /// The values with their names, largest first, as reports list them.
    public var rows: [(name: String, value: Double)] {
        [("max", maximum), ("99.9%", p99_9), ("99%", p99), ("95%", p95), ("90%", p90), ("median", median),
         ("10%", p10), ("5%", p5), ("1%", p1), ("0.1%", p0_1), ("min", minimum)]
    }
}

/// The statistics of an evaluation, under llama-perplexity's names and definitions (its `--kl-divergence` report):
/// means with the standard error `sqrt((Σx²/n − mean²) / (n − 1))` (0 for 10 values or fewer), PPL = e^(mean NLL)
/// with uncertainty PPL · σ, ln(PPL ratio) with the covariance of the two NLLs, KL and Δp percentiles, RMS Δp, and the
/// top-1 agreement with its binomial error. Sums run in the order the tokens were scored, in double.
public struct EvalStatistics: Equatable, Sendable {
    /// Positions scored.
    public var tokens: Int
    /// Mean next-token cross-entropy of the model, in nats (nil for a bidirectional model).
    public var meanNLL: Estimate?
    /// e^(mean NLL): the perplexity.
    public var perplexity: Estimate?
    public var reference: Comparison?

    /// The model against a reference.
    public struct Comparison: Equatable, Sendable {
        public var referenceMeanNLL: Estimate?
        public var referencePerplexity: Estimate?
        /// Mean ln(PPL(model) / PPL(reference)).
        public var lnPerplexityRatio: Estimate?
        public var kld: Estimate
        public var kldSpread: Spread
        public var pDiff: Estimate?
        public var pDiffRMS: Estimate?
        public var pDiffSpread: Spread?
        public var sameTop: Estimate
        public var sameTopCount: Int
    }

    public init(_ s: TokenScores) {
        tokens = s.count
        let n = Double(s.count)
        func meanAndUncertainty(_ sum: Double, _ sum2: Double) -> Estimate {
            let f = sum / n
            let d = sum2 / n - f * f
            return Estimate(value: f, uncertainty: d > 0 && s.count > 10 ? (d / (n - 1)).squareRoot() : 0)
        }
        func sums(_ xs: [Double]) -> (Double, Double) { xs.reduce((0.0, 0.0)) { ($0.0 + $1, $0.1 + $1 * $1) } }
        func ppl(_ e: Estimate) -> Estimate { let v = arapack_exp(e.value); return Estimate(value: v, uncertainty: v * e.uncertainty) }
        if !s.nll.isEmpty {
            let (a, a2) = sums(s.nll)
            meanNLL = meanAndUncertainty(a, a2)
            perplexity = ppl(meanNLL!)
        }
        guard !s.kld.isEmpty else { return }
        let (k, k2) = sums(s.kld)
        let top = s.sameTop.filter { $0 }.count
        let p = Double(top) / n
        var c = Comparison(kld: meanAndUncertainty(k, k2), kldSpread: Spread(s.kld),
                           sameTop: Estimate(value: p, uncertainty: s.count > 1 ? (p * (1 - p) / (n - 1)).squareRoot() : 0), sameTopCount: top)
        if !s.referenceNLL.isEmpty, let model = meanNLL {
            let (b, b2) = sums(s.referenceNLL)
            let base = meanAndUncertainty(b, b2)
            c.referenceMeanNLL = base
            c.referencePerplexity = ppl(base)
            let ab = zip(s.nll, s.referenceNLL).reduce(0.0) { $0 + $1.0 * $1.1 }
            let covariance = s.count < 10 ? 0 : (ab / n - (s.nll.reduce(0, +) / n) * (s.referenceNLL.reduce(0, +) / n)) / (n - 1)
            let u = model.uncertainty * model.uncertainty + base.uncertainty * base.uncertainty - 2 * covariance
            c.lnPerplexityRatio = Estimate(value: model.value - base.value, uncertainty: max(u, 0).squareRoot())
            let (d, d2) = sums(s.pDiff)
            c.pDiff = meanAndUncertainty(d, d2)
            let (q2, q4) = s.pDiff.reduce((0.0, 0.0)) { ($0.0 + $1 * $1, $0.1 + $1 * $1 * $1 * $1) }
            let mse = meanAndUncertainty(q2, q4)
            let rms = mse.value.squareRoot()
            c.pDiffRMS = Estimate(value: rms, uncertainty: rms > 0 ? 0.5 / rms * mse.uncertainty : 0)
            c.pDiffSpread = Spread(s.pDiff)
        }
        reference = c
    }
}
