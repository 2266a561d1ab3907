import ArapackFormats

/// arapack's provenance, carried in a signature's predicate under `arapack`: what the bundle's manifest says of the
/// source and of the bundle, the manifest's own SHA-256, arapack's version, and the options and parity result of the
/// conversion that wrote it (null when not known, as when an existing bundle is signed). Keys spelled once, in the
/// `CodingKeys`; written and read through this one type.
public struct Provenance: Codable, Equatable, Sendable {
    public struct Builder: Codable, Equatable, Sendable {
        public var name: String
        public var version: String
    }

    /// The bundle the signature covers, as its manifest.json describes it.
    public struct Bundle: Codable, Equatable, Sendable {
        public var modelType: String
        public var dtype: String
        public var parameterCount: Int
        public var manifestSHA256: String

        enum CodingKeys: String, CodingKey {
            case modelType = "model_type", dtype, parameterCount = "parameter_count", manifestSHA256 = "manifest_sha256"
        }
    }

    /// The options of the conversion that wrote the bundle, as `convert` was given them: file names only, no paths;
    /// null where a flag was not given.
    public struct Options: Codable, Equatable, Sendable {
        public var to: String
        public var dtype: String?
        public var int8GroupSize: Int?
        public var int4GroupSize: Int?
        public var keep: [String]
        public var maxShardSize: Int?
        public var config: String?
        public var tokenizer: String?
        public var allowUntied: Bool
        public var sourceDigest: Bool
        public var license: String?
        public var repoID: String?
        public var baseModel: String?
        public var modelCard: String?

        public init(to: String, dtype: String?, int8GroupSize: Int?, int4GroupSize: Int? = nil, keep: [String], maxShardSize: Int?, config: String?,
                    tokenizer: String?, allowUntied: Bool, sourceDigest: Bool, license: String?, repoID: String?, baseModel: String?, modelCard: String?) {
            (self.to, self.dtype, self.int8GroupSize, self.int4GroupSize) = (to, dtype, int8GroupSize, int4GroupSize)
            (self.keep, self.maxShardSize) = (keep, maxShardSize)
            (self.config, self.tokenizer, self.allowUntied, self.sourceDigest) = (config, tokenizer, allowUntied, sourceDigest)
            (self.license, self.repoID, self.baseModel, self.modelCard) = (license, repoID, baseModel, modelCard)
        }

        enum CodingKeys: String, CodingKey {
            case to, dtype, int8GroupSize = "int8_group_size", int4GroupSize = "int4_group_size", keep, maxShardSize = "max_shard_size", config, tokenizer
            case allowUntied = "allow_untied", sourceDigest = "source_digest", license, repoID = "repo_id", baseModel = "base_model"
            case modelCard = "model_card"
        }

        /// Every key, in this order, null where not given.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(to, forKey: .to)
            try c.encodeOrNull(dtype, forKey: .dtype)
            try c.encodeOrNull(int8GroupSize, forKey: .int8GroupSize)
            try c.encodeOrNull(int4GroupSize, forKey: .int4GroupSize)
            try c.encode(keep, forKey: .keep)
            try c.encodeOrNull(maxShardSize, forKey: .maxShardSize)
            try c.encodeOrNull(config, forKey: .config)
            try c.encodeOrNull(tokenizer, forKey: .tokenizer)
            try c.encode(allowUntied, forKey: .allowUntied)
            try c.encode(sourceDigest, forKey: .sourceDigest)
            try c.encodeOrNull(license, forKey: .license)
            try c.encodeOrNull(repoID, forKey: .repoID)
            try c.encodeOrNull(baseModel, forKey: .baseModel)
            try c.encodeOrNull(modelCard, forKey: .modelCard)
        }
    }

    public var builder: Builder
    /// manifest.json's `source`.
    public var source: Manifest.Source
    public var bundle: Bundle
    /// The conversion's options as the command line gave them (file names only), or null.
    public var options: Options?
    public var parity: ParitySummary?

    enum CodingKeys: String, CodingKey { case builder, source, bundle, options, parity }

    /// The provenance of a bundle whose manifest is `manifest` (and whose manifest.json has `manifestSHA256`).
    public init(manifest: Manifest, manifestSHA256: String, options: Options?, parity: ParitySummary?) {
        builder = Builder(name: "arapack", version: arapackVersion)
        source = manifest.source
        bundle = Bundle(modelType: manifest.modelType, dtype: manifest.dtype, parameterCount: manifest.parameterCount,
                        manifestSHA256: manifestSHA256)
        self.options = options
        self.parity = parity
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(builder, forKey: .builder)
        try c.encode(source, forKey: .source)
        try c.encode(bundle, forKey: .bundle)
        try c.encodeOrNull(options, forKey: .options)
        try c.encodeOrNull(parity, forKey: .parity)
    }

    /// As written into the statement.
    public var json: JSONValue { try! JSONValueEncoder().encode(self) }

    /// A provenance read from a signature (nil when it is not in the form arapack writes).
    public init?(json: JSONValue) {
        guard let p = try? JSONValueDecoder().decode(Provenance.self, from: json) else { return nil }
        self = p
    }

    /// Where the provenance disagrees with the bundle's manifest (`manifest`, whose file has `manifestSHA256`).
    public func problems(against manifest: Manifest, manifestSHA256: String) -> [String] {
        var problems: [String] = []
        if source != manifest.source { problems.append("the provenance's source differs from manifest.json's") }
        let expected = Bundle(modelType: manifest.modelType, dtype: manifest.dtype, parameterCount: manifest.parameterCount,
                              manifestSHA256: manifestSHA256)
        for (field, differs) in [("model_type", bundle.modelType != expected.modelType), ("dtype", bundle.dtype != expected.dtype),
                                 ("parameter_count", bundle.parameterCount != expected.parameterCount)] where differs {
            problems.append("the provenance's \(field) differs from manifest.json's")
        }
        if bundle.manifestSHA256 != manifestSHA256 { problems.append("the provenance names another manifest.json") }
        return problems
    }

    /// The provenance as lines for `verify` (names from the file escaped).
    public var lines: [String] {
        func show(_ v: JSONValue?) -> String { (v.map { $0.stringValue ?? $0.serialized() } ?? "null").escapingControlCharacters }
        var lines = [
            "provenance  built by \(builder.name.escapingControlCharacters) \(builder.version.escapingControlCharacters)",
            "  source    \(source.file.escapingControlCharacters) (\(source.format.escapingControlCharacters)), sha256 \((source.sha256 ?? "null").escapingControlCharacters), step \(source.step.map(String.init) ?? "null")",
            "  bundle    \(bundle.modelType.escapingControlCharacters), \(bundle.dtype.escapingControlCharacters), \(bundle.parameterCount) parameters",
            "  options   " + (options.flatMap { try? JSONValueEncoder().encode($0).members }.map { $0.map { "\($0.key.escapingControlCharacters)=\(show($0.value))" }.joined(separator: " ") } ?? "not recorded"),
        ]
        if let s = parity {
            lines.append("  parity    " + (s.passed ? "passed" : "FAILED") + " (\(s.thresholds.escapingControlCharacters), max |Δlogit| \(ParitySummary.text(s.maxAbsDiff)), "
                         + "mean KL \(ParitySummary.text(s.meanKL)), top-1 \(ParitySummary.text(s.top1Agreement)))")
        } else {
            lines.append("  parity    not run when signed")
        }
        return lines
    }
}
