import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The result of `arapack verify`: each check with its outcome, and every problem found.
public struct VerifyReport: Sendable {
    public struct Check: Sendable {
        public var name: String
        public var problems: [String]
        /// What a passing check has to say all the same (`none`: the release carries no tokenizer; `mismatch (recorded:
        /// …)`): the line reads `note` instead of `ok`, and the verdict is unchanged.
        public var note: String? = nil
        public var ok: Bool { problems.isEmpty }

        public init(name: String, problems: [String], note: String? = nil) {
            self.name = name
            self.problems = problems
            self.note = note
        }

        /// The check's line in verify's text.
        var line: String {
            if !ok { return "FAIL  " + name + ": " + problems.joined(separator: "; ") }
            return note.map { "note  \(name): \($0)" } ?? "ok    " + name
        }
    }

    public var path: String
    public var checks: [Check] = []
    public var problems: [String] { checks.flatMap { c in c.problems.map { "\(c.name): \($0)" } } }
    public var passed: Bool { problems.isEmpty }

    /// One line per check.
    public var text: String {
        var lines = ["verify \(path)"]
        lines += checks.map(\.line)
        lines.append(passed ? "passed" : "FAILED: \(problems.count) problem(s)")
        return lines.map(\.escapingControlCharacters).joined(separator: "\n")
    }
}

/// Structural verification of a release bundle, a folder or a `.tar.zst` read as a stream (never unpacked
/// to disk): manifest digests and sizes, config ⇄ tensors, the tie, NaN/Inf, tokenizer consistency.
/// Unreadable input throws (exit 2); everything found wrong is a problem in the report (exit 1).
public enum BundleVerifier {
    /// `signature`, the name of a signature file inside the bundle (besides model.sig), is not expected in the manifest.
    public static func verify(path: String, signature: String? = nil, progress: Progress) throws -> VerifyReport {
        let contents = BundleContents(file: path)
        var st = stat()
        guard stat(path, &st) == 0 else { throw SourceError.notFound(path: path) }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            let names = try BundleFolder.files(path)
            let total = names.reduce(0) { sum, name in
                if case let .regular(size)? = try? FileKind(atPath: path + "/" + name) { return sum + size }
                return sum
            }
            progress.begin("reading \(path)", total: total)
            for name in names { try feedFile(path + "/" + name, name: name, into: contents, progress: progress) }
        } else {
            progress.begin("reading \(path)", total: 0)
            try ArchiveReader.read(path, visitor: contents)
        }
        progress.end()
        return check(contents, path: path, unlisted: [ModelSignature.defaultFileName] + (signature.map { [$0] } ?? []))
    }

    /// Reads one regular file of a bundle into `visitor` under `name` (its path inside the bundle).
    static func feedFile(_ path: String, name: String, into visitor: BundleContents, progress: Progress) throws {
        // Only regular files, checked before any open: a FIFO would block, a symlink could lead outside the bundle.
        switch try FileKind(atPath: path) {
        case .regular: break
        case .symlink: throw BundleError.notRegular(path: path, kind: .symlink)
        case .directory, .other: throw BundleError.notRegular(path: path, kind: .notAFile)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw BundleError.notRegular(path: path, kind: .notAFile)
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 20, alignment: 64)
        defer { buffer.deallocate() }
        try visitor.begin(name: name, size: Int(st.st_size))
        while true {
            let n = retryingOnInterrupt { read(fd, buffer.baseAddress, buffer.count) }
            guard n >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
            if n == 0 { break }
            try visitor.data(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            progress.advance(n)
        }
        try visitor.end()
    }

    static func check(_ b: BundleContents, path: String, unlisted: [String]) -> VerifyReport {
        var checks = BundleChecks(b: b, path: path, unlisted: unlisted)
        var report = VerifyReport(path: path)
        func run(_ name: String, _ body: () throws -> [String]) {
            do { report.checks.append(.init(name: name, problems: try body())) } catch { report.checks.append(.init(name: name, problems: ["\(error)"])) }
        }
        run("manifest") { try checks.manifestProblems() }
        run("config") { try checks.configProblems() }
        run("tensors") { try checks.tensorProblems() }
        run("NaN/Inf") { checks.nonFiniteProblems() }
        run("tokenizer") { try checks.tokenizerProblems() }
        if checks.hasNoTokenizer { report.checks[report.checks.count - 1].note = BundleChecks.noTokenizerNote }
        for extra in checks.extraChecks() { report.checks.append(.init(name: extra.name, problems: extra.problems)) }
        run("model card") { checks.modelCardProblems() }
        run("training metadata") { try checks.trainingMetadataProblems() }
        return report
    }
}

/// The named checks of `verify`, one function each, in the order they run: the manifest and the config are read
/// once and kept for the checks after them.
struct BundleChecks {
    let b: BundleContents
    let path: String
    /// Files the manifest does not list on purpose (signatures).
    let unlisted: [String]
    private(set) var manifest: Manifest?
    private(set) var config: ModelConfig?

    init(b: BundleContents, path: String, unlisted: [String]) {
        self.b = b
        self.path = path
        self.unlisted = unlisted
    }

    /// Every listed file present with its size and SHA-256, nothing unlisted, paths relative and listed once.
    mutating func manifestProblems() throws -> [String] {
        guard let json = try b.json(Manifest.fileName) else { return ["no manifest.json"] }
        let m: Manifest
        do { m = try Manifest(json: json) } catch let e as JSONDecodingError { return ["\(Manifest.fileName) \(e)"] }
        manifest = m
        var problems: [String] = []
        if m.formatVersion != Manifest.currentFormatVersion { problems.append("format_version is not \(Manifest.currentFormatVersion)") }
        var seen = Set<String>()
        for f in m.files {
            let (name, size, digest) = (f.path, f.size, f.sha256)
            guard ModelSignature.isRelativePath(name) else {
                problems.append("\(name) is not a relative path inside the bundle (absolute, empty, or with . or ..)")
                continue
            }
            guard size >= 0, ModelSignature.isHexDigest(digest) else {
                problems.append("\(name): the size must be a byte count and sha256 64 lower-case hex digits")
                continue
            }
            guard seen.insert(name).inserted else { problems.append("\(name) is listed twice"); continue }
            guard let actual = b.files[name] else { problems.append("\(name) is listed but missing"); continue }
            if actual.size != size { problems.append("\(name) has \(actual.size) bytes, the manifest says \(size)") }
            if actual.sha256 != digest { problems.append("\(name) has SHA-256 \(actual.sha256), the manifest says \(digest)") }
        }
        for name in b.files.keys.sorted() where name != Manifest.fileName && !unlisted.contains(name) && !seen.contains(name) {
            problems.append("\(name) is in the bundle but not in the manifest")
        }
        return problems
    }

    /// config.json complete, of a known model type, consistent with the tensor shapes and the manifest; then the
    /// generation config.
    mutating func configProblems() throws -> [String] {
        guard let c = try b.json("config.json") else { return ["no config.json"] }
        guard let type = c["model_type"]?.stringValue, let form = ReleaseForms.bundleForm(modelType: type) else {
            let types = ReleaseForms.bundles.flatMap(\.modelTypes)
            return ["model_type must be " + types.dropLast().joined(separator: ", ") + " or " + types.last!]
        }
        b.form = form
        var assembly = ConfigAssembly(source: "config.json")
        try assembly.add(c, origin: "config.json")
        for field in form.requiredConfigFields where c[field] == nil {
            return ["config.json lacks \(field)"]
        }
        if let problem = form.configProblems(c).first { return [problem] }
        try assembly.addShapes(b.trainingShapes)
        let resolved = try assembly.resolve()
        config = resolved
        var problems: [String] = []
        if let m = manifest, m.modelType != form.modelType(resolved) { problems.append("manifest model_type differs from config.json") }
        if let m = manifest, m.parameterCount != resolved.parameterCount {
            problems.append("manifest parameter_count \(m.parameterCount) but the config implies \(resolved.parameterCount)")
        }
        return problems + (try generationConfigProblems(resolved))
    }

    /// generation_config.json: the special ids of the config, sampling values in range, max_length within the positions.
    func generationConfigProblems(_ config: ModelConfig) throws -> [String] {
        guard let g = try b.json("generation_config.json") else { return ["no generation_config.json"] }
        var problems: [String] = []
        for (field, id) in [("bos_token_id", config.bos), ("eos_token_id", config.eos), ("pad_token_id", config.pad)] where g[field]?.intValue != id {
            problems.append("generation_config.json \(field) differs from config.json")
        }
        if let t = g["temperature"], !(t.doubleValue.map { $0.isFinite && $0 > 0 } ?? false) {
            problems.append("generation_config.json temperature \(t.serialized().prefix(40)) is not a positive number")
        }
        if let p = g["top_p"], !(p.doubleValue.map { $0 > 0 && $0 <= 1 } ?? false) {
            problems.append("generation_config.json top_p \(p.serialized().prefix(40)) is not in (0, 1]")
        }
        if let d = g["do_sample"], d.boolValue == nil { problems.append("generation_config.json do_sample is not true or false") }
        if let length = g["max_length"], length.intValue.map({ $0 < 1 || $0 > config.maxPositions }) ?? true {
            problems.append("generation_config.json max_length \(length.serialized()) is not within 1...\(config.maxPositions) positions")
        }
        return problems
    }

    /// Every tensor present with its shape under the layout's names, the tie recorded, the shards indexed, the dtype
    /// agreeing with the manifest and config.json.
    func tensorProblems() throws -> [String] {
        guard let config else { return ["not checked: config.json is unusable"] }
        var problems: [String] = []
        let layout = b.form.layout
        let foreign = b.descriptors.keys.filter { layout.training(of: $0) == nil && !$0.hasSuffix(ModelFamily.int8ScaleSuffix) }.sorted()
        if !foreign.isEmpty { problems.append("tensor names \(b.form.foreignNames): \(ModelFamily.list(foreign))") }
        problems += ModelFamily.tensorProblems(config, b.trainingDescriptors, headOptional: config.tieWordEmbeddings,
                                               display: { layout.name(of: $0) })
        let head = layout.name(of: ModelFamily.lmHead), emb = layout.name(of: ModelFamily.embedding)
        if config.tieWordEmbeddings {
            if b.descriptors[head] != nil { problems.append("\(head) is stored although tie_word_embeddings is true") }
            if b.safetensorsMetadata.contains(where: { $0.value[head] != emb }) {
                problems.append("__metadata__ does not record \(head) → \(emb)")
            }
        }
        let dtype = try dtypeProblems(config)
        return problems + dtype.manifest + (try shardProblems()) + dtype.config
    }

    /// The index lists exactly the stored tensors and only shards that exist (or there is one model.safetensors).
    func shardProblems() throws -> [String] {
        guard let index = try b.json("model.safetensors.index.json") else {
            return b.files["model.safetensors"] == nil ? ["neither model.safetensors nor model.safetensors.index.json"] : []
        }
        var problems: [String] = []
        let map = index["weight_map"]?.members ?? []
        if Set(map.map(\.key)) != Set(b.descriptors.keys) { problems.append("the index's weight_map does not list exactly the stored tensors") }
        for m in map where m.value.stringValue.map({ b.files[$0] == nil }) ?? true {
            problems.append("the index maps \(m.key) to a missing shard \(m.value.serialized())")
        }
        return problems
    }

    /// The weights' dtype as the manifest and config.json state it; int8 with the quantization config that loads it.
    func dtypeProblems(_ config: ModelConfig) throws -> (manifest: [String], config: [String]) {
        let quantized = b.descriptors.values.contains { $0.dtype == .i8 }
        guard let d = quantized ? DType.i8 : b.descriptors[b.form.layout.name(of: ModelFamily.embedding)]?.dtype else { return ([], []) }
        var inManifest: [String] = []
        if let m = manifest, TorchGlobals.dtypeName[d] != m.dtype { inManifest.append("the manifest says \(m.dtype) but the weights are \(d.name)") }
        guard let c = try b.json("config.json") else { return (inManifest, []) }
        var problems: [String] = []
        if c["torch_dtype"]?.stringValue != (quantized ? "float32" : TorchGlobals.dtypeName[d]) {
            problems.append("config.json torch_dtype differs from the weights (\(d.name))")
        }
        if quantized != (c["quantization_config"]?["quant_method"]?.stringValue == "compressed-tensors") {
            problems.append(quantized ? "int8 weights without a compressed-tensors quantization_config in config.json"
                                      : "config.json has a quantization_config but the weights are not int8")
        } else if quantized, let q = c["quantization_config"], b.form.accepts(.i8) {
            problems += Int8Quantization.loadProblems(q, stored: b.descriptors.mapValues(\.dtype), tied: config.tieWordEmbeddings)
        }
        return (inManifest, problems)
    }

    func nonFiniteProblems() -> [String] {
        b.nonFinite.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "tensor \"\($0.key)\" holds \($0.value) NaN/Inf value(s)" }
    }

    /// The bundle carries no tokenizer (verify says `tokenizer: none` rather than `ok`).
    var hasNoTokenizer: Bool { b.files["tokenizer.json"] == nil && b.files[TokenizerFiles.subfolder + "/tokenizer.json"] == nil }
    static let noTokenizerNote = "none (the bundle carries no tokenizer: AutoTokenizer cannot load it)"

    /// The tokenizer files agree with themselves and with config.json (when the bundle has them).
    func tokenizerProblems() throws -> [String] {
        guard !hasNoTokenizer else { return [] }
        guard let config else { return ["not checked: config.json is unusable"] }
        let tok = try TokenizerFiles(directory: path, files: Array(b.files.keys)) { name in
            guard let j = try b.json(name) else { throw BundleError.missingFile(bundle: path, name: name) }
            return j
        }
        try tok.check(against: config, configOrigin: "config.json")
        return []
    }

    /// The checks the bundle's form adds (the native bundle's wrapper).
    func extraChecks() -> [(name: String, problems: [String])] {
        b.form.extraChecks(config: try? b.json("config.json"), resolved: config, read: b.bytes)
    }

    func modelCardProblems() -> [String] {
        guard b.files[ModelCard.fileName] != nil else { return ["no \(ModelCard.fileName) (the model card)"] }
        guard let bytes = b.bytes(ModelCard.fileName), let text = String(validating: bytes, as: UTF8.self) else {
            return ["\(ModelCard.fileName) is not UTF-8 text of at most \(BundleContents.maximumJSONSize) bytes"]
        }
        return ModelCard.frontMatterProblem(text).map { ["\(ModelCard.fileName): \($0)"] } ?? []
    }

    func trainingMetadataProblems() throws -> [String] {
        guard let m = try b.json("training_metadata.json") else { return ["no training_metadata.json"] }
        return m.members == nil ? ["training_metadata.json is not a JSON object"] : []
    }
}

/// The files of a bundle folder: regular files at its top and in folders directly under it (the tokenizer's
/// base_tokenizer/), by relative path, sorted. Symlinks, FIFOs, devices and deeper folders are refused (lstat,
/// nothing opened): a bundle is read only through regular files inside it.
public enum BundleFolder {
    /// Files a bundle may hold: a release has a dozen plus its shards (200 for a terabyte in 5 GB shards); a
    /// folder of thousands of tiny files is refused before any is opened (each costs a hash, a check, a line).
    public static let maximumFiles = 10_000

    public static func files(_ folder: String) throws -> [String] {
        var out: [String] = []
        func add(_ name: String) throws {
            guard out.count < maximumFiles else { throw BundleError.tooManyFiles(folder: folder, limit: maximumFiles) }
            out.append(name)
        }
        for name in try directoryEntries(folder) {
            switch try FileKind(atPath: folder + "/" + name) {
            case .regular: try add(name)
            case .directory:
                for inner in try directoryEntries(folder + "/" + name) {
                    switch try FileKind(atPath: folder + "/" + name + "/" + inner) {
                    case .regular: try add(name + "/" + inner)
                    case .directory: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .folderTwoDeep)
                    case .symlink: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .symlink)
                    case .other: throw BundleError.notRegular(path: folder + "/" + name + "/" + inner, kind: .special)
                    }
                }
            case .symlink: throw BundleError.notRegular(path: folder + "/" + name, kind: .symlink)
            case .other: throw BundleError.notRegular(path: folder + "/" + name, kind: .special)
            }
        }
        return out.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// A bundle held in memory, checked again with one file replaced at a time (the bundle fuzz target mutates a
/// valid bundle's JSON files this way; everything else is read once). Package access: the fuzz target's, not the API's.
package final class BundleSnapshot: @unchecked Sendable {
    private let base: BundleContents
    private let path: String

    /// `files` are the bundle's files by name; a file named in `replaceable` is left out until `verify`.
    package init(path: String, files: [(name: String, bytes: [UInt8])], replaceable: Set<String>) throws {
        self.path = path
        base = BundleContents(file: path)
        for f in files where !replaceable.contains(f.name) {
            try base.feed(name: f.name, bytes: f.bytes)
            if f.name.hasSuffix(".json") { _ = try? base.json(f.name) }  // parsed once, not per check
        }
    }

    /// The structural report of the bundle with these files (usually the replaceable ones) added.
    package func verify(with files: [(name: String, bytes: [UInt8])]) throws -> VerifyReport {
        let contents = base.copy()
        for f in files { try contents.feed(name: f.name, bytes: f.bytes) }
        return BundleVerifier.check(contents, path: path, unlisted: [ModelSignature.defaultFileName])
    }
}

/// Everything `verify` learns in one pass over a bundle's files: size and SHA-256 of each, the bytes of the
/// small JSON files, every safetensors header and each tensor's NaN/Inf count (scanned as bytes stream by).
final class BundleContents: ArchiveReader.Visitor {
    static let maximumJSONSize = 64 << 20
    /// Files kept in memory for the checks (JSON, the wrapper's Python, the model card), up to maximumJSONSize each.
    static let keptSuffixes = [".json", ".py", ".md"]
    let file: String
    private(set) var files: [String: (size: Int, sha256: String)] = [:]
    private var jsonBytes: [String: [UInt8]] = [:]
    /// JSON files parsed so far (the checks ask for config.json several times; the fuzz target's base files once).
    private var parsed: [String: JSONValue] = [:]
    private(set) var descriptors: [String: TensorDescriptor] = [:]
    private(set) var nonFinite: [String: Int] = [:]
    private(set) var safetensorsMetadata: [String: [String: String]] = [:]
    /// The bundle's form (set from config.json's model_type before the tensors are checked; the native bundle until then).
    var form: any BundleForm = NativeBundle()

    private var name = ""
    private var size = 0
    private var seen = 0
    private var digest = SHA256()
    private var keep: [UInt8]?
    private var scanner: SafetensorsStreamScanner?

    init(file: String) { self.file = file }

    /// A copy holding what has been fed so far (between files).
    func copy() -> BundleContents {
        let c = BundleContents(file: file)
        c.files = files
        c.jsonBytes = jsonBytes
        c.parsed = parsed
        c.descriptors = descriptors
        c.nonFinite = nonFinite
        c.safetensorsMetadata = safetensorsMetadata
        return c
    }

    /// Feeds one whole file held in memory.
    func feed(name: String, bytes: [UInt8]) throws {
        try begin(name: name, size: bytes.count)
        try bytes.withUnsafeBytes { try data($0) }
        try end()
    }

    func begin(name: String, size: Int) throws {
        self.name = name
        self.size = size
        seen = 0
        digest = SHA256()
        keep = Self.keptSuffixes.contains(where: name.hasSuffix) && size <= Self.maximumJSONSize ? [] : nil
        scanner = name.hasSuffix(".safetensors") ? SafetensorsStreamScanner(file: file + "/" + name, size: size) : nil
    }

    func data(_ bytes: UnsafeRawBufferPointer) throws {
        digest.update(bytes)
        seen += bytes.count
        keep?.append(contentsOf: bytes)
        try scanner?.feed(bytes)
    }

    func end() throws {
        guard seen == size else { throw BundleError.shortRead(file: file, name: name, read: seen, size: size) }
        files[name] = (size, digest.hexDigest())
        parsed[name] = nil
        if let keep { jsonBytes[name] = keep }
        if let s = scanner {
            let header = try s.finish()
            for e in header.entries {
                guard descriptors[e.name] == nil else { throw BundleError.tensorInTwoShards(file: file, tensor: e.name) }
                descriptors[e.name] = TensorDescriptor(dtype: e.dtype, shape: e.shape)
            }
            for (k, v) in s.nonFinite { nonFinite[k] = v }
            safetensorsMetadata[name] = header.metadata ?? [:]
        }
    }

    /// The bytes of a kept file (nil when absent or too large to keep).
    func bytes(_ name: String) -> [UInt8]? { jsonBytes[name] }

    /// A JSON file of the bundle, parsed (nil when absent).
    func json(_ name: String) throws -> JSONValue? {
        guard let bytes = jsonBytes[name] else {
            if files[name] != nil { throw BundleError.jsonTooLarge(file: file + "/" + name, limit: Self.maximumJSONSize) }
            return nil
        }
        if let value = parsed[name] { return value }
        do {
            let value = try JSONParser.parse(bytes)
            parsed[name] = value
            return value
        } catch { throw BundleError.invalidJSON(file: file + "/" + name, detail: "\(error)") }
    }

    /// Tensor descriptors under training names (the layout's names mapped back, GPT-2's transposed shapes turned
    /// back); an int8 weight and its scale count as one float32 tensor when the scale's shape fits the weight.
    var trainingDescriptors: [String: TensorDescriptor] {
        var byTraining: [String: TensorDescriptor] = [:]
        for (k, v) in descriptors {
            let training = form.layout.trainingName(of: k)
            byTraining[training] = form.layout.trainingDescriptor(of: training, v)
        }
        return ModelFamily.foldQuantized(byTraining).tensors
    }

    var trainingShapes: [String: [Int]] { trainingDescriptors.mapValues(\.shape) }
}


/// A bundle (or a file meant for one) that cannot be read as one.
public enum BundleError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What stands where a bundle's regular file should be.
    public enum Entry: Sendable { case symlink, notAFile, folderTwoDeep, special }

    case notRegular(path: String, kind: Entry)
    case missingFile(bundle: String, name: String)
    case jsonTooLarge(file: String, limit: Int)
    case invalidJSON(file: String, detail: String)
    case shortRead(file: String, name: String, read: Int, size: Int)
    case tensorInTwoShards(file: String, tensor: String)
    /// A user's model card (`--model-card`) that is too large, not UTF-8, or has front matter the Hub would not read.
    case modelCard(file: String, problem: String)
    case manifest(file: String, problem: JSONDecodingError)
    case tooManyFiles(folder: String, limit: Int)

    public var description: String {
        switch self {
        case let .notRegular(path, .symlink): return "\(path): a symlink; a bundle holds regular files only"
        case let .notRegular(path, .notAFile): return "\(path): not a regular file; a bundle holds regular files, at most one folder deep"
        case let .notRegular(path, .folderTwoDeep): return "\(path): a folder two deep; a bundle holds regular files, at most one folder deep"
        case let .notRegular(path, .special): return "\(path): not a regular file (a FIFO, device or socket)"
        case let .missingFile(bundle, name): return "\(bundle): \(name) is missing"
        case let .jsonTooLarge(file, limit): return "\(file): larger than \(limit) bytes"
        case let .invalidJSON(file, detail): return "\(file): not valid JSON: \(detail)"
        case let .shortRead(file, name, read, size): return "\(file): \(name): read \(read) bytes of \(size)"
        case let .tensorInTwoShards(file, tensor): return "\(file): tensor \"\(tensor)\" appears in two shards"
        case let .modelCard(file, problem): return "\(file): \(problem)"
        case let .manifest(file, problem): return "\(file): \(problem)"
        case let .tooManyFiles(folder, limit): return "\(folder): more than \(limit) files; a bundle holds a release's dozen files and its shards"
        }
    }
}
