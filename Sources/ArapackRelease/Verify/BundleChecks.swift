import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The named checks of `verify`, one function each, in the order they run: the manifest and the config are read
/// once and kept for the checks after them. The bundle's form is known before any check runs (from config.json's
/// model_type) and read by the checks as their own constant, never set by one of them.
struct BundleChecks {
    let b: BundleContents
    let path: String
    /// Files the manifest does not list on purpose (signatures).
    let unlisted: [String]
    /// The form config.json's model_type names (the native bundle when it names none; the config check says so).
    let form: any BundleForm
    private(set) var manifest: Manifest?
    private(set) var config: ModelConfig?

    init(b: BundleContents, path: String, unlisted: [String]) {
        self.b = b
        self.path = path
        self.unlisted = unlisted
        let config = (try? b.json("config.json")) ?? nil
        let type = config?["model_type"]?.stringValue
        form = type.flatMap { ReleaseForms.bundleForm(modelType: $0) } ?? NativeBundle()
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
        guard let type = c["model_type"]?.stringValue, ReleaseForms.bundleForm(modelType: type) != nil else {
            let types = ReleaseForms.bundles.flatMap(\.modelTypes)
            return ["model_type must be " + types.dropLast().joined(separator: ", ") + " or " + types.last!]
        }
        var assembly = ConfigAssembly(source: "config.json")
        try assembly.add(c, origin: "config.json")
        for field in form.requiredConfigFields where c[field] == nil {
            return ["config.json lacks \(field)"]
        }
        if let problem = form.configProblems(c).first { return [problem] }
        try assembly.addShapes(b.trainingShapes(in: form.layout))
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
        for field in BundleWriter.generationIDs where g[field.stringValue]?.intValue != config.value(of: field).intValue {
            problems.append("generation_config.json \(field.stringValue) differs from config.json")
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
        let layout = form.layout
        let foreign = b.descriptors.keys.filter { layout.training(of: $0) == nil && !ModelFamily.QuantizedParts.isPart($0) }.sorted()
        if !foreign.isEmpty { problems.append("tensor names \(form.foreignNames): \(ModelFamily.list(foreign))") }
        problems += ModelFamily.tensorProblems(config, b.trainingDescriptors(in: layout), headOptional: config.tieWordEmbeddings,
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

    /// The weights' dtype as the manifest and config.json state it; int8 or int4 with the quantization config that loads it.
    func dtypeProblems(_ config: ModelConfig) throws -> (manifest: [String], config: [String]) {
        let quantization = ModelFamily.foldQuantized(b.descriptors).parts.min { $0.key < $1.key }.flatMap { base, p -> LinearQuantization? in
            guard let stored = b.descriptors[p.packed ?? base], let scale = b.descriptors[p.scale] else { return nil }
            return LinearQuantization.of(stored: stored, scale: scale)
        }
        let floating = b.descriptors[form.layout.name(of: ModelFamily.embedding)]?.dtype
        guard let weights = quantization?.scheme.rawValue ?? floating.map({ TorchGlobals.dtypeName[$0] ?? $0.name }) else { return ([], []) }
        var inManifest: [String] = []
        if let m = manifest, weights != m.dtype { inManifest.append("the manifest says \(m.dtype) but the weights are \(weights)") }
        guard let c = try b.json("config.json") else { return (inManifest, []) }
        var problems: [String] = []
        if c["torch_dtype"]?.stringValue != (quantization != nil ? "float32" : weights) {
            problems.append("config.json torch_dtype differs from the weights (\(weights)\(quantization != nil ? ", which state float32" : ""))")
        }
        if (quantization != nil) != (c["quantization_config"]?["quant_method"]?.stringValue == "compressed-tensors") {
            problems.append(quantization.map { "\($0.scheme.rawValue) weights without a compressed-tensors quantization_config in config.json" }
                            ?? "config.json has a quantization_config but the weights are not quantized")
        } else if let quantization, let q = c["quantization_config"], form.dtypes.contains(quantization.scheme.rawValue) {
            problems += LinearQuantization.loadProblems(q, stored: b.descriptors.mapValues(\.dtype), tied: config.tieWordEmbeddings)
        }
        return (inManifest, problems + statedShapeProblems())
    }

    /// Each int4 weight's `_shape` states the shape its words and scale give (what compressed-tensors unpacks to).
    func statedShapeProblems() -> [String] {
        let (folded, parts) = ModelFamily.foldQuantized(b.descriptors)
        return parts.sorted { $0.key < $1.key }.compactMap { base, p -> String? in
            guard let shapeName = p.shape, let folded = folded[base] else { return nil }
            let bytes = b.smallTensors[shapeName] ?? []
            let dtype = b.descriptors[shapeName]?.dtype
            let width = dtype == .i64 ? 8 : 4
            let stated = stride(from: 0, to: bytes.count - width + 1, by: width).map { i in
                width == 8 ? Int(Int64(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i, as: Int64.self) }))
                           : Int(Int32(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i, as: Int32.self) }))
            }
            return stated == folded.shape ? nil : "\(shapeName) states \(stated), but its words and scale make \(folded.shape)"
        }
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
        form.extraChecks(config: try? b.json("config.json"), resolved: config, read: b.bytes)
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
