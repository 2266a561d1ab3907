import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

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
