import ArapackFormats
import ArapackModel

/// release.json: every artifact of a release set (`arapack release`), with its form, dtype, files (path under DST,
/// bytes, SHA-256) and parity figures; Codable through `JSONValueEncoder` (members in declaration order),
/// described by Schemas/release.schema.json.
public struct ReleaseIndex: Codable, Equatable, Sendable {
    public static let fileName = "release.json"
    /// Its signature in a signed release (model-signing's single-file form, as a GGUF file's).
    public static let signatureFileName = "release.json.sig"

    public struct File: Codable, Equatable, Sendable {
        public var path: String
        public var size: Int
        public var sha256: String
    }

    public struct Artifact: Codable, Equatable, Sendable {
        /// Its path under DST (a bundle folder, or a GGUF file in its folder).
        public var name: String
        /// `convert --to`'s name of its form.
        public var form: String
        /// What its weights are (`float32`, `bfloat16`, `int8`, `int4`, `q8_0`, …).
        public var dtype: String
        public var files: [File]
        public var bytes: Int
        /// The parity run before release, when asked.
        public var parity: ParitySummary?

        public init(name: String, form: String, dtype: String, files: [File], bytes: Int, parity: ParitySummary?) {
            (self.name, self.form, self.dtype, self.files, self.bytes, self.parity) = (name, form, dtype, files, bytes, parity)
        }

        enum CodingKeys: String, CodingKey { case name, form, dtype, files, bytes, parity }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(form, forKey: .form)
            try c.encode(dtype, forKey: .dtype)
            try c.encode(files, forKey: .files)
            try c.encode(bytes, forKey: .bytes)
            try c.encodeOrNull(parity, forKey: .parity)
        }
    }

    public var format = "arapack-release"
    public var arapackVersion = ArapackRelease.arapackVersion
    /// The model the artifacts hold: its type, parameters, the source's file name and SHA-256 (null without a digest).
    public var modelType: String
    public var parameterCount: Int
    public var source: String
    public var sourceSHA256: String?
    public var artifacts: [Artifact]

    enum CodingKeys: String, CodingKey {
        case format, arapackVersion = "arapack_version", modelType = "model_type", parameterCount = "parameter_count", source
        case sourceSHA256 = "source_sha256", artifacts
    }

    public init(model: ReleaseModel, sourceSHA256: String?, artifacts: [Artifact]) {
        modelType = model.config.modelType
        parameterCount = model.config.parameterCount
        source = splitPath(trimmingTrailingSlashes(model.info.path)).1
        self.sourceSHA256 = sourceSHA256
        self.artifacts = artifacts
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format)
        try c.encode(arapackVersion, forKey: .arapackVersion)
        try c.encode(modelType, forKey: .modelType)
        try c.encode(parameterCount, forKey: .parameterCount)
        try c.encode(source, forKey: .source)
        try c.encodeOrNull(sourceSHA256, forKey: .sourceSHA256)
        try c.encode(artifacts, forKey: .artifacts)
    }

    public var text: String { try! JSONValueEncoder().encode(self).serialized(pretty: true) + "\n" }

    /// The digests a bundle's manifest.json gives its files, by path under the bundle's parent, for the files whose
    /// size on disk is the manifest's (the release just wrote both; anything else is hashed again).
    public static func manifestDigests(of name: String, under root: String) throws -> [String: String] {
        let folder = root + "/" + name
        guard pathExists(folder + "/" + Manifest.fileName) else { return [:] }
        var out: [String: String] = [:]
        for f in try Manifest(path: folder + "/" + Manifest.fileName).files where (try? fileSize(folder + "/" + f.path)) == f.size {
            out[name + "/" + f.path] = f.sha256
        }
        return out
    }

    /// The files an artifact wrote under `root`: for a folder every file in it (and its archive and checksum beside
    /// it); for a file, the file and its signature beside it. `known` gives the SHA-256 of files whose digest the
    /// release already has (a bundle's manifest, an archive's), by path under `root`; the others are hashed.
    public static func files(of name: String, under root: String, known: [String: String] = [:]) throws -> [File] {
        let path = root + "/" + name
        var paths: [String]
        if (try? FileKind(atPath: path)) == .directory {
            paths = try BundleFolder.files(path).map { name + "/" + $0 }
        } else {
            paths = [name]
        }
        for extra in [name + ".tar.zst", name + ".tar.zst.sha256", name + ".sig"] where pathExists(root + "/" + extra) { paths.append(extra) }
        return try paths.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map {
            File(path: $0, size: try fileSize(root + "/" + $0), sha256: try known[$0] ?? SHA256.hex(ofFile: root + "/" + $0))
        }
    }
}

/// How a release set names its artifacts, from the repository's name (`--repo-id OWNER/NAME`, else the model's family
/// and size): the native bundle in a floating dtype is NAME (NAME-bf16, … when there are several), a quantized one
/// NAME-int8 / NAME-int4, the GPT-2 form NAME-gpt2 (NAME-gpt2-f16, … when several), a GGUF file
/// NAME-GGUF/NAME-Q4_K_M.gguf.
public enum ReleaseNaming {
    /// The artifacts' names, in order, for (form, dtype name) pairs; `sourceDType` names a GGUF kept in the source's dtype.
    public static func names(base: String, artifacts: [(form: String, dtype: String?)], sourceDType: String) -> [String] {
        let floating = Set(["f32", "bf16", "f16"])
        let floatBundles = artifacts.filter { $0.form == NativeBundle().name && ($0.dtype.map(floating.contains) ?? true) }.count
        let gpt2s = artifacts.filter { $0.form == GPT2Bundle().name }.count
        return artifacts.map { a in
            switch a.form {
            case GGUFRelease().name:
                return "\(base)-GGUF/\(base)-\((a.dtype ?? sourceDType).uppercased()).gguf"
            case GPT2Bundle().name:
                return base + "-gpt2" + (gpt2s > 1 ? "-" + (a.dtype ?? sourceDType) : "")
            default:
                if let d = a.dtype, !floating.contains(d) { return base + "-" + d }
                return floatBundles > 1 ? base + "-" + (a.dtype ?? sourceDType) : base
            }
        }
    }
}
