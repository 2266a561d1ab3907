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

    /// Runs the bundle against its source; explicit limits replace the defaults of the bundle's kind.
    /// A --seq-len past the model's positions is a usage error naming the limit.
    func run(bundle: ReleaseModel, source: ReleaseModel) throws -> ParityReport {
        if let l = seqLen, l > bundle.config.maxPositions {
            throw UsageError("--seq-len \(l) is more than the model's max_position_embeddings (\(bundle.config.maxPositions))")
        }
        var t = Parity.defaultThresholds(bundle: bundle, source: source)
        if maxAbsDiff != nil || maxMeanKl != nil || minTop1 != nil {
            t.overridden = true
            if let v = maxAbsDiff { t.maxAbsDiff = v }
            if let v = maxMeanKl { t.maxMeanKL = v }
            if let v = minTop1 { t.minTop1 = v }
        }
        return try Parity.run(bundle: bundle, against: source, probes: probes, length: seqLen, seed: seed,
                              probeIDs: try probeIds.map(Parity.probeIDs(file:)), thresholds: t)
    }

    /// The source opened with the bundle's config (so a DCP folder or a config-less checkpoint needs nothing more).
    static func openSource(_ path: String, for bundle: ReleaseModel) throws -> ReleaseModel {
        // The bundle's config fills what the source may not record (the head count); not its dropout, which a
        // GPT-2 export sets to 0 whatever the source trained with and which no logit depends on.
        let members = bundle.config.hfJSON(torchDtype: "float32").members?.filter { $0.key != "dropout" } ?? []
        return try ReleaseModel(path: path, config: (.object(members), "the bundle's config.json"), allowUntied: !bundle.tied)
    }
}
