import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

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
