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

    @Option(help: "Override the maximum |Δlogit| allowed (lossless default 0, golden default 1e-4).")
    var maxAbsDiff: Double?

    @Option(help: "Override the maximum mean KL(source ‖ bundle) allowed for cast bundles.")
    var maxMeanKl: Double?

    @Option(help: "Override the minimum top-1 agreement allowed for cast bundles.")
    var minTop1: Double?

    func validate() throws {
        if !(1...ParityOptions.maximumProbes).contains(probes) { throw ValidationError("--probes must be between 1 and \(ParityOptions.maximumProbes)") }
        if let l = seqLen, l < 1 { throw ValidationError("--seq-len must be at least 1") }
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
        (r.maxAbsDiff, r.maxMeanKL, r.minTop1) = (maxAbsDiff, maxMeanKl, minTop1)
        return r
    }
}
