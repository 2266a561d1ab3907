import ArapackFormats
import ArapackModel

/// manifest.json: what a bundle holds and how to check it. Written by `BundleWriter` and read by `verify` and
/// `sign` through this one type (`JSONValueEncoder` / `JSONValueDecoder`: members in declaration order, the
/// bytes `OutputPinTests` pins).
public struct Manifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let currentFormatVersion = 1

    /// One file of the bundle (a path inside it, one folder deep at most).
    public struct File: Codable, Equatable, Sendable {
        public var path: String
        public var size: Int
        public var sha256: String
    }

    public var formatVersion: Int
    public var arapackVersion: String
    public var modelType: String
    public var parameterCount: Int
    /// The weights' torch dtype name (`float32`, `bfloat16`, `int8`, …).
    public var dtype: String
    /// Tensor names that share one tensor (the LM head and the embedding of a tied model).
    public var tiedGroups: [[String]]
    /// What a bundle was converted from, as the conversion recorded it (the manifest's and the provenance's `source`).
    public struct Source: Codable, Equatable, Sendable {
        /// The source's file or folder name (no path).
        public var file: String
        /// Its format, as `SourceDetection` names it (`torch`, `dcp`, `safetensors`, …).
        public var format: String
        /// The SHA-256 of its bytes (null with `--no-source-digest`).
        public var sha256: String?
        /// The training step it records (null when it records none).
        public var step: Int?

        public init(file: String, format: String, sha256: String?, step: Int?) {
            self.file = file
            self.format = format
            self.sha256 = sha256
            self.step = step
        }

        enum CodingKeys: String, CodingKey { case file, format, sha256, step }

        /// Every key written, null where unknown.
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(file, forKey: .file)
            try c.encode(format, forKey: .format)
            try c.encodeOrNull(sha256, forKey: .sha256)
            try c.encodeOrNull(step, forKey: .step)
        }
    }

    /// What the bundle was converted from (file, format, SHA-256, step), as the conversion recorded it.
    public var source: Source
    /// Every file but the manifest, sorted by path (bytewise).
    public var files: [File]
    /// The int8 report (docs/bundle.md), when the weights are quantized.
    public var quantization: QuantizationReport?
    /// The parity summary, when `--parity` ran before the bundle was finished.
    public var parity: ParitySummary?

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", arapackVersion = "arapack_version", modelType = "model_type"
        case parameterCount = "parameter_count", dtype, tiedGroups = "tied_groups", source, files, quantization, parity
    }

    init(config: ModelConfig, form: any BundleForm, dtype: String, source: Source, files: [WrittenFile],
         quantization: QuantizationReport? = nil, parity: ParitySummary? = nil) {
        formatVersion = Self.currentFormatVersion
        arapackVersion = ArapackRelease.arapackVersion
        modelType = form.modelType(config)
        parameterCount = config.parameterCount
        self.dtype = dtype
        tiedGroups = config.tieWordEmbeddings ? [[form.layout.name(of: ModelFamily.lmHead), form.layout.name(of: ModelFamily.embedding)]] : []
        self.source = source
        self.files = files.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map { File(path: $0.name, size: $0.size, sha256: $0.sha256) }
        self.quantization = quantization
        self.parity = parity
    }

    /// Decodes a parsed manifest.json; an error names the field and what was expected.
    public init(json: JSONValue) throws { self = try JSONValueDecoder().decode(Manifest.self, from: json) }

    /// Reads and decodes the manifest.json at `path`.
    public init(path: String) throws {
        do { try self.init(json: try readJSON(path)) } catch let e as JSONDecodingError { throw BundleError.manifest(file: path, problem: e) }
    }

    /// The manifest as written (encoding plain values cannot fail).
    public var json: JSONValue { try! JSONValueEncoder().encode(self) }

    /// manifest.json's text, as written.
    public var text: String { json.serialized(pretty: true) + "\n" }

    /// The SHA-256 of manifest.json (of `text`), without reading it back.
    public var sha256: String { Array(text.utf8).withUnsafeBytes { SHA256.hex(of: $0) } }
}
