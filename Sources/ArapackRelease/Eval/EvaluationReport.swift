import ArapackFormats
import ArapackModel

/// The report of an evaluation, as text and as JSON (Schemas/eval-report.schema.json): what was scored and
/// llama-perplexity's statistics (`EvalStatistics`).
public struct EvaluationReport: Encodable {
    public let part: EvaluationPart
    public let statistics: EvalStatistics

    init(part: EvaluationPart) {
        self.part = part
        statistics = EvalStatistics(part.scores)
    }

    /// What was scored, in words (every next-token position, unlike llama-perplexity's second halves).
    public var scoring: String {
        part.causal
            ? "every next-token position of each sequence (llama-perplexity scores only the second half of each chunk)"
            : "every position of the given ids (a bidirectional model has no next-token loss)"
    }

    public var text: String {
        let s = statistics
        func padded(_ name: String) -> String { name + String(repeating: " ", count: max(0, 7 - name.count)) }
        var lines = ["eval \(part.model)" + (part.reference.map { " against \($0)" } ?? ""),
                     "data        " + part.shards.map { "\($0.file) (sha256 \($0.sha256.prefix(12))…)" }.joined(separator: ", "),
                     "scored      \(grouped(s.tokens)) tokens in \(grouped(part.sequences)) sequences: \(scoring)"]
        if part.part != [0, 1] { lines.append("part        \(part.part[0] + 1) of \(part.part[1]) (merge the parts with arapack eval --merge)") }
        func est(_ e: Estimate, _ scale: Double = 1, _ unit: String = "") -> String {
            "\(metricText(e.value * scale))\(unit) ± \(metricText(e.uncertainty * scale))\(unit)"
        }
        if let nll = s.meanNLL, let ppl = s.perplexity {
            lines.append("loss        \(est(nll)) nats per token (mean cross-entropy)")
            lines.append("perplexity  \(est(ppl))")
        }
        guard let r = s.reference else { return lines.map(\.escapingControlCharacters).joined(separator: "\n") }
        if let base = r.referencePerplexity, let ratio = r.lnPerplexityRatio {
            lines += ["", "====== Perplexity statistics ======",
                      "Mean PPL(Q)               : \(est(s.perplexity!))",
                      "Mean PPL(base)            : \(est(base))",
                      "Mean ln(PPL(Q)/PPL(base)) : \(est(ratio))"]
        }
        lines += ["", "====== KL divergence statistics ======", "Mean    KLD: \(est(r.kld))"]
        lines += r.kldSpread.rows.map { "\(padded($0.name)) KLD: \(metricText($0.value))" }
        if let d = r.pDiff, let rms = r.pDiffRMS, let spread = r.pDiffSpread {
            lines += ["", "====== Token probability statistics ======", "Mean    Δp: \(est(d, 100, " %"))"]
            lines += spread.rows.map { "\(padded($0.name)) Δp: \(metricText($0.value * 100)) %" }
            lines.append("RMS Δp    : \(est(rms, 100, " %"))")
        }
        lines.append("Same top p: \(est(r.sameTop, 100, " %")) (\(r.sameTopCount) of \(s.tokens))")
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }

    enum CodingKeys: String, CodingKey {
        case arapackVersion = "arapack_version", model, reference, shards, selection, sequences, tokens, scoring, loss, perplexity, comparison
    }
    enum ComparisonKeys: String, CodingKey {
        case referenceLoss = "reference_loss", referencePerplexity = "reference_perplexity", lnPerplexityRatio = "ln_ppl_ratio"
        case kld, kldPercentiles = "kld_percentiles", pDiff = "delta_p", pDiffRMS = "delta_p_rms", pDiffPercentiles = "delta_p_percentiles"
        case sameTop = "same_top_p", sameTopCount = "same_top_count"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        let s = statistics
        try c.encode(arapackVersion, forKey: .arapackVersion)
        try c.encode(part.model, forKey: .model)
        try c.encodeOrNull(part.reference, forKey: .reference)
        try c.encode(part.shards, forKey: .shards)
        try c.encode(part.selection, forKey: .selection)
        try c.encode(part.sequences, forKey: .sequences)
        try c.encode(s.tokens, forKey: .tokens)
        try c.encode(scoring, forKey: .scoring)
        try c.encodeOrNull(s.meanNLL.map(EstimateJSON.init), forKey: .loss)
        try c.encodeOrNull(s.perplexity.map(EstimateJSON.init), forKey: .perplexity)
        guard let r = s.reference else { try c.encodeNil(forKey: .comparison); return }
        var m = c.nestedContainer(keyedBy: ComparisonKeys.self, forKey: .comparison)
        try m.encodeOrNull(r.referenceMeanNLL.map(EstimateJSON.init), forKey: .referenceLoss)
        try m.encodeOrNull(r.referencePerplexity.map(EstimateJSON.init), forKey: .referencePerplexity)
        try m.encodeOrNull(r.lnPerplexityRatio.map(EstimateJSON.init), forKey: .lnPerplexityRatio)
        try m.encode(EstimateJSON(r.kld), forKey: .kld)
        try m.encode(SpreadJSON(r.kldSpread), forKey: .kldPercentiles)
        try m.encodeOrNull(r.pDiff.map(EstimateJSON.init), forKey: .pDiff)
        try m.encodeOrNull(r.pDiffRMS.map(EstimateJSON.init), forKey: .pDiffRMS)
        try m.encodeOrNull(r.pDiffSpread.map(SpreadJSON.init), forKey: .pDiffPercentiles)
        try m.encode(EstimateJSON(r.sameTop), forKey: .sameTop)
        try m.encode(r.sameTopCount, forKey: .sameTopCount)
    }

    /// `{"value": …, "uncertainty": …}`, non-finite numbers by name.
    struct EstimateJSON: Encodable {
        let e: Estimate
        init(_ e: Estimate) { self.e = e }
        enum CodingKeys: String, CodingKey { case value, uncertainty }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(JSONValue.metric(e.value), forKey: .value)
            try c.encode(JSONValue.metric(e.uncertainty), forKey: .uncertainty)
        }
    }

    /// The percentiles by name (`max`, `99.9%`, …, `min`).
    struct SpreadJSON: Encodable {
        let s: Spread
        init(_ s: Spread) { self.s = s }
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            for row in s.rows { try c.encode(JSONValue.metric(row.value), forKey: Key(stringValue: row.name)) }
        }
    }

    /// The report as JSON.
    public var json: JSONValue { try! JSONValueEncoder().encode(self) }
}

/// An evaluation part as a file (`eval --shard I/N --report PART.json`), read back by `eval --merge`: the run's
/// description and every scored token's columns as base64 of little-endian float64 (bools as bytes), so the merge
/// sees exactly the bits the part computed.
extension EvaluationPart {
    public static let formatKey = "arapack_eval_part"

    public var json: JSONValue {
        func column(_ xs: [Double]) -> JSONValue {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(xs.count * 8)
            for x in xs { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } }
            return .string(Base64.encode(bytes))
        }
        let description = (try? JSONValueEncoder().encode(report)) ?? .null
        return .object([
            .init(Self.formatKey, .int(1)),
            .init("part", .array(part.map { .int($0) })),
            .init("causal", .bool(causal)),
            .init("report", description),
            .init("scores", .object([
                .init("nll", column(scores.nll)), .init("reference_nll", column(scores.referenceNLL)),
                .init("kld", column(scores.kld)), .init("delta_p", column(scores.pDiff)),
                .init("same_top", .string(Base64.encode(scores.sameTop.map { $0 ? 1 : 0 }))),
            ])),
        ])
    }

    /// Reads a part file written by `json`; `file` names it in errors.
    public init(json: JSONValue, file: String) throws {
        func fail(_ problem: String) -> EvaluationError { .partFile(file: file, problem: problem) }
        guard json[Self.formatKey]?.intValue == 1 else { throw fail("no \(Self.formatKey): 1") }
        guard let part = json["part"]?.elements?.compactMap(\.intValue), part.count == 2, part[1] >= 1, (0..<part[1]).contains(part[0]) else {
            throw fail("part is not [index, count]")
        }
        guard case let .bool(causal)? = json["causal"], let report = json["report"], let scores = json["scores"] else { throw fail("causal, report or scores missing") }
        func column(_ key: String) throws -> [Double] {
            guard let text = scores[key]?.stringValue, let bytes = Base64.decode(text), bytes.count % 8 == 0 else { throw fail("scores.\(key) is not base64 float64") }
            return stride(from: 0, to: bytes.count, by: 8).map { i in
                Double(bitPattern: bytes[i..<(i + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            }
        }
        var s = TokenScores()
        (s.nll, s.referenceNLL, s.kld, s.pDiff) = (try column("nll"), try column("reference_nll"), try column("kld"), try column("delta_p"))
        guard let flags = scores["same_top"]?.stringValue.flatMap(Base64.decode), flags.allSatisfy({ $0 <= 1 }) else { throw fail("scores.same_top is not base64 bytes") }
        s.sameTop = flags.map { $0 == 1 }
        let n = s.count
        guard [s.nll.count, s.referenceNLL.count, s.kld.count, s.pDiff.count, s.sameTop.count].allSatisfy({ $0 == 0 || $0 == n }) else {
            throw fail("its score columns have different lengths")
        }
        guard let model = report["model"]?.stringValue, let shardsJSON = report["shards"], let selectionJSON = report["selection"],
              let sequences = report["sequences"]?.intValue else { throw fail("report.model, shards, selection or sequences missing") }
        do {
            self.init(model: model, reference: report["reference"]?.stringValue,
                      shards: try JSONValueDecoder().decode([Shard].self, from: shardsJSON),
                      selection: try JSONValueDecoder().decode(Selection.self, from: selectionJSON),
                      part: part, causal: causal, sequences: sequences, scores: s)
        } catch let e as JSONDecodingError { throw fail("\(e)") }
    }
}
