import ArapackFormats
import ArapackTensor
import Dispatch

/// The arapack version recorded in manifests.
public let arapackVersion = "0.1.0"

/// Options of a release bundle.
public struct BundleOptions: Sendable {
    /// The dtype of the floating weights; nil keeps the source's.
    public var dtype: DType?
    /// Shard model.safetensors past this many bytes of tensor data; nil never shards.
    public var maxShardSize: Int?
    /// Whether to record the SHA-256 of the source in the manifest (null otherwise).
    public var sourceDigest: Bool
    public init(dtype: DType? = nil, maxShardSize: Int? = nil, sourceDigest: Bool = true) {
        self.dtype = dtype
        self.maxShardSize = maxShardSize
        self.sourceDigest = sourceDigest
    }
}

/// Writes a release bundle (BUNDLE.md) into a folder: model.safetensors (or shards + index), config.json,
/// generation_config.json, training_metadata.json, the tokenizer files and manifest.json, every byte
/// a function of the source and the options (no times, hosts or absolute paths).
public enum BundleWriter {
    /// `torch_dtype` names.
    public static let torchDTypeName: [DType: String] = [.f32: "float32", .bf16: "bfloat16", .f16: "float16", .f64: "float64"]

    /// Writes the bundle into the existing empty folder `directory`; returns the manifest written.
    @discardableResult
    public static func write(_ model: ReleaseModel, tokenizer: TokenizerFiles?, options: BundleOptions,
                             into directory: String, progress: Progress) throws -> JSONValue {
        // The source digest runs on the second core while the model is written.
        let sourceDigest = options.sourceDigest ? DigestTask(files: model.info.files) : nil
        let dtype = options.dtype ?? model.dominantDType
        var files: [WrittenFile] = []

        let total = try model.names.reduce(0) { $0 + Shape.byteCount(try model.source.descriptor(named: $1.source).shape, dtype: dtype)! }
        progress.begin("writing weights", total: total)
        var pending: [PendingTensor] = []
        let caster = TensorCaster()
        for (training, _) in model.names {
            let shape = try model.source.descriptor(named: model.names.first { $0.training == training }!.source).shape
            pending.append(PendingTensor(name: ModelFamily.releasePrefix + training, dtype: dtype, shape: shape) { out in
                let t = try model.tensor(training)
                try caster.write(t, as: dtype, name: ModelFamily.releasePrefix + training, to: out)
                progress.advance(Shape.byteCount(shape, dtype: dtype)!)
            })
        }
        var metadata = ["format": "pt"]
        if model.tied {
            metadata[ModelFamily.releasePrefix + ModelFamily.lmHead] = ModelFamily.releasePrefix + ModelFamily.embedding
        }
        files += try SafetensorsWriter.writeSharded(pending, metadata: metadata, directory: directory, maxShardSize: options.maxShardSize)
        progress.end()

        let dtypeName = torchDTypeName[dtype] ?? dtype.name
        files.append(try writeJSON(model.config.hfJSON(torchDtype: dtypeName), to: directory + "/config.json"))
        files.append(try writeJSON(generationConfig(model.config), to: directory + "/generation_config.json"))
        files.append(try writeJSON(.object(model.trainingMetadata), to: directory + "/training_metadata.json"))
        for name in tokenizer?.files ?? [] {
            files.append(try copyFile(tokenizer!.directory + "/" + name, to: directory + "/" + name))
        }
        progress.begin("hashing the source", total: 0)
        let source = JSONValue.object([
            .init("file", .string(splitPath(model.info.path.hasSuffix("/") ? String(model.info.path.dropLast()) : model.info.path).1)),
            .init("format", .string(model.info.format)),
            .init("sha256", try sourceDigest.map { .string(try $0.wait()) } ?? .null),
            .init("step", model.step.map { .int($0) } ?? .null),
        ])
        progress.end()
        let manifest = Manifest.build(config: model.config, dtype: dtypeName, source: source, files: files)
        try writeJSON(manifest, to: directory + "/" + Manifest.fileName)
        return manifest
    }

    /// generation_config.json (BUNDLE.md): sampling defaults and the special ids.
    static func generationConfig(_ c: ModelConfig) -> JSONValue {
        .object([
            .init("bos_token_id", .int(c.bos)), .init("eos_token_id", .int(c.eos)), .init("pad_token_id", .int(c.pad)),
            .init("do_sample", .bool(true)), .init("temperature", .double(0.8)), .init("top_p", .double(0.9)),
        ])
    }

    /// Writes pretty JSON plus a newline.
    @discardableResult
    static func writeJSON(_ value: JSONValue, to path: String) throws -> WrittenFile {
        try writeText(value.serialized(pretty: true) + "\n", to: path)
    }

    /// Copies a file byte for byte.
    static func copyFile(_ from: String, to path: String) throws -> WrittenFile {
        let file = try MappedFile(path: from)
        let out = try AtomicFileWriter(destination: path, hashing: true)
        try file.withUnsafeBytes { try out.write($0) }
        try out.commit()
        return WrittenFile(name: splitPath(path).1, size: out.bytesWritten, sha256: out.sha256!)
    }
}

/// SHA-256 of a source, computed on another thread: the file's digest for one file; for several (a DCP
/// folder, shards), the digest of the lines `<sha256>  <file name>\n` sorted by name.
final class DigestTask: @unchecked Sendable {
    private let group = DispatchGroup()
    private var result: Result<String, Error> = .success("")

    init(files: [String]) {
        group.enter()
        DispatchQueue.global().async { [self] in
            result = Result { try Self.digest(files) }
            group.leave()
        }
    }

    func wait() throws -> String {
        group.wait()
        return try result.get()
    }

    static func digest(_ files: [String]) throws -> String {
        if files.count == 1 { return try SHA256.hex(ofFile: files[0]) }
        let lines = try files.map { (splitPath($0).1, try SHA256.hex(ofFile: $0)) }.sorted { $0.0 < $1.0 }
        return Array(lines.map { "\($0.1)  \($0.0)\n" }.joined().utf8).withUnsafeBytes { SHA256.hex(of: $0) }
    }
}

/// manifest.json: what a bundle holds and how to check it.
public enum Manifest {
    public static let fileName = "manifest.json"
    public static let formatVersion = 1

    static func build(config: ModelConfig, dtype: String, source: JSONValue, files: [WrittenFile]) -> JSONValue {
        let tied: JSONValue = config.tieWordEmbeddings
            ? .array([.array([.string(ModelFamily.releasePrefix + ModelFamily.lmHead), .string(ModelFamily.releasePrefix + ModelFamily.embedding)])])
            : .array([])
        return .object([
            .init("format_version", .int(formatVersion)),
            .init("arapack_version", .string(arapackVersion)),
            .init("model_type", .string(config.modelType)),
            .init("parameter_count", .int(config.parameterCount)),
            .init("dtype", .string(dtype)),
            .init("tied_groups", tied),
            .init("source", source),
            .init("files", .array(files.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map {
                .object([.init("path", .string($0.name)), .init("size", .int($0.size)), .init("sha256", .string($0.sha256))])
            })),
        ])
    }
}
