import ArapackFormats
import ArapackRelease
import ArgumentParser

/// The parity options `verify` and `convert` share.
struct ParityOptions: ParsableArguments {
    @Option(help: "Probe sequences for --parity.")
    var probes = 8

    @Option(help: "Tokens per probe (default: min(max_position_embeddings, 64)).")
    var seqLen: Int?

    @Option(help: "Seed of the probe ids (SplitMix64).")
    var seed: UInt64 = 0

    @Option(help: "Probe with these token ids instead of random ones: a safetensors file with ids (I64 [N, L]), e.g. held-out text.")
    var probeIds: String?

    @Option(help: "Probe with real data: the first --probes sequences of --seq-len ids (default: the model's positions) of these token shards (.npy, Megatron .idx/.bin, a raw memmap with --token-dtype, or a folder; see arapack eval --help). The report, the manifest and the card then give the release's perplexity, KL and top-1 agreement on that data, and name it.")
    var tokens: String?

    @Option(help: "With --tokens: the dtype of raw memmap shards (u16, u32, i32, i64).")
    var tokenDtype: String?

    @Option(help: "Override the maximum |Δlogit| allowed (lossless default 0, golden default 1e-4).")
    var maxAbsDiff: Double?

    @Option(help: "Override the maximum mean KL(source ‖ bundle) allowed for cast bundles.")
    var maxMeanKl: Double?

    @Option(help: "Override the minimum top-1 agreement allowed for cast bundles.")
    var minTop1: Double?

    func validate() throws {
        if !(1...ParityOptions.maximumProbes).contains(probes) { throw ValidationError("--probes must be between 1 and \(ParityOptions.maximumProbes)") }
        if let l = seqLen, l < 1 { throw ValidationError("--seq-len must be at least 1") }
        if tokens != nil && probeIds != nil { throw ValidationError("--tokens and --probe-ids are two sources of probes: give one") }
        if let t = tokenDtype, TokenDType(rawValue: t) == nil { throw ValidationError("--token-dtype: \(t); one of u16, u32, i32, i64") }
        if tokenDtype != nil && tokens == nil { throw ValidationError("--token-dtype applies to --tokens") }
    }

    /// Most probe sequences a parity run takes (each holds L × vocabulary logits per side).
    static let maximumProbes = 4096

    /// The request the flags make.
    var request: ParityRequest {
        var r = ParityRequest()
        r.probes = probes
        r.sequenceLength = seqLen
        r.seed = seed
        r.probeIDsFile = probeIds
        r.tokens = tokens
        r.tokenDType = tokenDtype.flatMap(TokenDType.init(rawValue:))
        (r.maxAbsDiff, r.maxMeanKL, r.minTop1) = (maxAbsDiff, maxMeanKl, minTop1)
        return r
    }
}
