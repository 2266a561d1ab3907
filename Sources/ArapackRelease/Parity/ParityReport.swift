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
