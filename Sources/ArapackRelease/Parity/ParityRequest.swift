import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

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
        let members = bundle.config.members.filter { $0.key != ModelConfig.Field.dropout.stringValue }
        return try ReleaseModel(path: path, config: (.object(members), "the bundle's config.json"), allowUntied: !bundle.tied)
    }
}
