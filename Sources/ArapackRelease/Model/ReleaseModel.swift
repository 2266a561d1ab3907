import ArapackFormats
import ArapackModel
import ArapackTensor
import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// A model read from any source arapack understands, checked against the AraFusion family: every expected
/// tensor present with its shape, nothing unexpected, the config consistent with the tensors, the tie known.
public final class ReleaseModel {
    /// What the source is.
    public struct SourceInfo: Sendable {
        public var path: String
        public var format: String
        /// The files read (for the source digest).
        public var files: [String]
    }

    public let source: TensorSource
    public let info: SourceInfo
    public let config: ModelConfig
    /// Training name → name in the source, for every tensor of the model (without `lm_head.weight` when tied).
    public let names: [(training: String, source: String)]
    /// Whether the LM head is the embedding (`tie_word_embeddings`).
    public var tied: Bool { config.tieWordEmbeddings }
    /// What the source records about training (step, losses, config, …), in its order.
    public let trainingMetadata: [JSONValue.Member]
    /// Config fields nothing stated, filled with the family's defaults.
    public let assumedFields: [String]
    /// The tensors (source names) that stand for each quantized weight, by training name.
    public let quantizedParts: [String: ModelFamily.QuantizedParts]
    /// How the source's nn.Linear weights are quantized (int8 or int4 bundles), nil when they are not.
    public let quantization: LinearQuantization?
    /// How the source names its tensors (a GPT-2 bundle stores its linear weights transposed).
    public let layout: NamingLayout
    /// The tokenizer given, or the source bundle's own.
    public let tokenizer: TokenizerFiles?
    /// The unpacked copy of an archive source (kept while the model is in use).
    private let extracted: ExtractedArchive?
    /// The source's SHA-256, computed once on another thread for every release written from this model.
    private var digest: DigestTask?

    /// Logits of this model by the batch of ids they answer, kept for the next parity run against it (a release's
    /// artifacts share their source's reference) while they fit `referenceBytes`; nil: not kept (convert, verify).
    private var keptLogits: [[[Int]]: [Float]]?
    private var keptBytes = 0
    /// What `keepLogits` holds at most (the default 8 × 64 probes of a 76,800-token vocabulary take 157 MB).
    public static let referenceBytes = 640 << 20

    /// How many batches of logits `logits(of:compute:)` computed (the rest it had kept).
    public private(set) var computedLogitBatches = 0

    /// From now on, keeps the logits `logits(of:compute:)` computes, for the parity runs that follow.
    public func keepLogits() { if keptLogits == nil { keptLogits = [:] } }

    /// The logits of `batch`: kept ones, or `compute()`'s (then kept, if this model keeps logits and they fit).
    func logits(of batch: [[Int]], compute: () throws -> [Float]) rethrows -> [Float] {
        if let kept = keptLogits?[batch] { return kept }
        let computed = try compute()
        computedLogitBatches += 1
        if keptLogits != nil, keptBytes + computed.count * 4 <= Self.referenceBytes {
            keptLogits![batch] = computed
            keptBytes += computed.count * 4
        }
        return computed
    }

    /// The source's SHA-256 (the file's, or for several files the digest of their sorted `<sha256>  <name>` lines),
    /// computed once.
    public func sourceSHA256() throws -> String { try sourceDigest().wait() }

    /// The source's SHA-256 as it is being computed (started by the first caller; later callers share it).
    func sourceDigest() -> DigestTask {
        if let digest { return digest }
        let task = DigestTask(files: info.files)
        digest = task
        return task
    }

    public var step: Int? { trainingMetadata.first { $0.key == "step" }?.value.intValue }

    /// Opens `path`, merges its config with `configFile` (either naming style), and checks everything.
    /// An LM head that differs from the embedding is refused unless `allowUntied`.
    /// A tokenizer's special ids join the config (and must agree with it); its vocabulary must fit.
    /// `config` (a parsed config and where it came from) joins like `configFile` does.
    public init(path: String, configFile: String? = nil, config extraConfig: (value: JSONValue, origin: String)? = nil,
                tokenizer: TokenizerFiles? = nil, allowUntied: Bool = false) throws {
        let (detected, _) = try SourceDetection.detect(path)
        // A release archive is unpacked to a private temporary folder and read as the bundle it holds.
        extracted = detected == .archive ? try ExtractedArchive(path) : nil
        let readPath = extracted?.bundle ?? path
        let (format, resolved) = try SourceDetection.detect(readPath)
        source = try SourceDetection.open(readPath)
        info = SourceInfo(path: path, format: detected.rawValue, files: extracted == nil ? source.filePaths : [path])
        var assembly = ConfigAssembly(source: path)
        var metadata: [JSONValue.Member] = []

        // Names: release names (`model.` + training name) or GPT-2 names in bundles, wrapped names in training checkpoints.
        let sourceNames = source.tensorNames
        let layout = NamingLayout.detect(sourceNames)
        self.layout = layout
        let (byTraining, descriptors, parts) = try Self.trainingNames(source, layout: layout, path: path)
        quantizedParts = parts
        let source = self.source
        quantization = try parts.min { $0.key < $1.key }.map { base, p in
            LinearQuantization.of(stored: try source.descriptor(named: p.packed ?? byTraining[base]!), scale: try source.descriptor(named: p.scale))
        }
        func load(_ training: String) throws -> Tensor {
            try Self.read(source, byTraining[training]!, parts: parts[training], transposed: layout.isTransposed(training))
        }

        guard byTraining[ModelFamily.embedding] != nil else {
            throw ReleaseModelError.notAraFusion(path: path, tensorCount: sourceNames.count, found: ModelFamily.list(sourceNames.sorted()))
        }
        try assembly.addShapes(descriptors.mapValues(\.shape))

        // What the source says about itself.
        if let ckpt = source as? TorchCheckpoint {
            metadata = Self.trainingMetadata(ckpt)
            if let c = ckpt.summary.config { try assembly.add(c, origin: "the checkpoint's config") }
        }
        let folder = (format == .safetensors || format == .safetensorsSharded) ? splitPath(resolved).0 : nil
        // A bundle's own tokenizer travels with it unless another is given.
        var tokenizer = tokenizer
        if tokenizer == nil, let folder, [TokenizerFiles.subfolder + "/tokenizer.json", "tokenizer.json"].contains(where: { access(folder + "/" + $0, F_OK) == 0 }) {
            tokenizer = try TokenizerFiles(directory: folder)
        }
        self.tokenizer = tokenizer
        if let folder, access(folder + "/config.json", F_OK) == 0 {
            try assembly.add(try readJSON(folder + "/config.json"), origin: folder + "/config.json")
            if access(folder + "/training_metadata.json", F_OK) == 0, let m = try readJSON(folder + "/training_metadata.json").members {
                metadata = m
            }
        }
        if let gguf = source as? GGUFFile { try GGUFRelease.describe(gguf, into: &assembly) }
        if let configFile { try assembly.add(try Self.readConfig(configFile), origin: configFile) }
        if let extraConfig { try assembly.add(extraConfig.value, origin: extraConfig.origin) }

        try Self.addTie(byTraining, load: load, allowUntied: allowUntied, path: path, to: &assembly)
        try tokenizer?.contribute(to: &assembly)
        let config = try assembly.resolve()
        try tokenizer?.check(against: config, configOrigin: "the config")
        self.config = config
        assumedFields = assembly.assumed
        trainingMetadata = metadata

        // Every expected tensor present with its shape; nothing unexpected.
        if let problem = ModelFamily.tensorProblems(config, descriptors, headOptional: config.tieWordEmbeddings, display: { byTraining[$0] ?? $0 }).first {
            throw ReleaseModelError.tensors(path: path, problem: problem)
        }
        let expected = ModelFamily.expectedShapes(config)
        names = expected.filter { $0.name != ModelFamily.lmHead || !config.tieWordEmbeddings }.map { ($0.name, byTraining[$0.name]!) }
    }

    /// The source's tensors under training names (`NamingLayout`), their descriptors (each quantized weight's tensors
    /// folded into one float32 tensor) and the parts of each quantized weight (source names); two names for one
    /// training name are refused.
    static func trainingNames(_ source: TensorSource, layout: NamingLayout, path: String) throws
        -> (byTraining: [String: String], descriptors: [String: TensorDescriptor], parts: [String: ModelFamily.QuantizedParts]) {
        var byTraining: [String: String] = [:]
        for name in source.tensorNames {
            let training = layout.trainingName(of: name)
            if let other = byTraining[training] {
                throw ReleaseModelError.sameTrainingName(path: path, first: other, second: name, training: training)
            }
            byTraining[training] = name
        }
        var stored: [String: TensorDescriptor] = [:]
        for (training, name) in byTraining {
            stored[training] = layout.trainingDescriptor(of: training, try source.descriptor(named: name))
        }
        let (descriptors, folded) = ModelFamily.foldQuantized(stored)
        var parts: [String: ModelFamily.QuantizedParts] = [:]
        for (base, p) in folded {
            if let packed = p.packed { byTraining[base] = byTraining.removeValue(forKey: packed) }
            parts[base] = ModelFamily.QuantizedParts(scale: byTraining[p.scale]!, packed: p.packed.flatMap { _ in byTraining[base] },
                                                     shape: p.shape.flatMap { byTraining[$0] })
            for name in [p.scale, p.shape].compactMap({ $0 }) { byTraining.removeValue(forKey: name) }
        }
        return (byTraining, descriptors, parts)
    }

    /// The tie: shared storage or equal bits; otherwise an untied model, refused unless allowed. No separate LM
    /// head is a tied model unless a config says otherwise.
    static func addTie(_ byTraining: [String: String], load: (String) throws -> Tensor, allowUntied: Bool, path: String,
                       to assembly: inout ConfigAssembly) throws {
        if let headName = byTraining[ModelFamily.lmHead], let embName = byTraining[ModelFamily.embedding] {
            let head = try load(ModelFamily.lmHead), emb = try load(ModelFamily.embedding)
            let equal = head.sharesStorage(with: emb) || head.isBitIdentical(to: emb)
            head.storage.discardMappedPages()
            emb.storage.discardMappedPages()
            if !equal {
                guard allowUntied else {
                    throw ReleaseModelError.untied(path: path, head: headName, embedding: embName, difference: try difference(head, emb))
                }
                try assembly.add(.tieWordEmbeddings, .bool(false), origin: "the tensors (untied)")
            } else if !assembly.has(.tieWordEmbeddings) {
                try assembly.add(.tieWordEmbeddings, .bool(true), origin: "the tensors (tied)")
            }
        } else if byTraining[ModelFamily.lmHead] == nil, assembly.has(.tieWordEmbeddings) == false {
            try assembly.add(.tieWordEmbeddings, .bool(true), origin: "the tensors (no separate LM head)")
        }
    }

    /// The tensor under its training name (`lm_head.weight` of a tied model is the embedding).
    public func tensor(_ training: String) throws -> Tensor {
        let name = training == ModelFamily.lmHead && tied ? ModelFamily.embedding : training
        guard let s = names.first(where: { $0.training == name })?.source else { throw ReleaseModelError.noTensor(path: info.path, name: training) }
        return try Self.read(source, s, parts: quantizedParts[name], transposed: layout.isTransposed(name))
    }

    /// A decoder of the stored rows of a quantized matrix under its training name (int8 and int4 values with their
    /// scales, a GGUF block type), which the forward pass reads a run of rows at a time, each value what `tensor`
    /// gives it; nil for any other tensor.
    public func rowDecoder(_ training: String) throws -> RowDecoder? {
        let name = training == ModelFamily.lmHead && tied ? ModelFamily.embedding : training
        guard let s = names.first(where: { $0.training == name })?.source, !layout.isTransposed(name) else { return nil }
        if let gguf = source as? GGUFFile { return try gguf.rowDecoder(named: s) }
        guard let parts = quantizedParts[name] else { return nil }
        return try LinearQuantization.rowDecoder(try source.tensor(named: s), scale: try source.tensor(named: parts.scale),
                                                 shape: try parts.shape.map { try source.tensor(named: $0) }, name: Self.display(source, s))
    }

    /// The tensors that store a quantized weight, as the source holds them, by what they add to the weight's name:
    /// int8's values ("") and scale, int4's packed words, scale and shape; nil for a weight that is not quantized.
    public func quantizedTensors(_ training: String) throws -> [(suffix: String, tensor: Tensor)]? {
        guard let parts = quantizedParts[training], let values = names.first(where: { $0.training == training })?.source else { return nil }
        let stored = try source.tensor(named: values), scale = try source.tensor(named: parts.scale)
        let shape = try parts.shape.map { try source.tensor(named: $0) }
        _ = try LinearQuantization.checkParts(stored, scale: scale, shape: shape, name: Self.display(source, values))
        return [(parts.packed == nil ? "" : LinearQuantization.packedSuffix, stored), (LinearQuantization.scaleSuffix, scale)]
            + (shape.map { [(LinearQuantization.shapeSuffix, $0)] } ?? [])
    }

    /// The shape of a tensor under its training name (GPT-2's transposed weights turned back).
    public func shape(of training: String) throws -> [Int] {
        guard let s = names.first(where: { $0.training == training })?.source else { throw ReleaseModelError.noTensor(path: info.path, name: training) }
        return layout.storedShape(of: training, try source.descriptor(named: s).shape)
    }

    /// Whether the model is a GGUF file, which llama.cpp runs with its own GELU.
    public var computesLlamaCppGELU: Bool { source is GGUFFile && config.activation == "gelu" }

    /// The weights' floating dtype: the embedding's (float32 for a GGUF block type; the quantized weights of an int8 or
    /// int4 bundle read as float32 too, and `quantization` says how they are stored).
    public var dominantDType: DType {
        if quantization != nil { return .f32 }
        let embedding = names.first { $0.training == ModelFamily.embedding }!.source
        // A GGUF's block types are read dequantized to float32 (and so written on, lossily; `ggufScheme` names them).
        return (try? source.descriptor(named: embedding).dtype) ?? .f32
    }

    /// What `--config` names: a JSON file, or the JSON itself when no file has that name and it starts with `{`
    /// (`--config '{"n_heads": 16}'`).
    public static func readConfig(_ argument: String) throws -> JSONValue {
        let text = argument.drop { $0 == " " || $0 == "\t" || $0 == "\n" }
        if !pathExists(argument), text.hasPrefix("{") {
            do { return try JSONParser.parse(Array(argument.utf8)) } catch { throw ConfigArgumentError(argument: argument, problem: "\(error)") }
        }
        return try readJSON(argument)
    }

    /// How llama.cpp rounds the input of a product with the weight of training name `name` (`ARAPACK_ROUND_*`): by
    /// the GGUF tensor's type; none for other sources.
    func llamaCppInputRounding(_ name: String) -> Int32 {
        guard let gguf = source as? GGUFFile, let stored = names.first(where: { $0.training == name })?.source,
              let type = try? gguf.entry(named: stored).type else { return 0 }
        switch type {
        case .q8_0, .q4_0, .q5_0, .q5_1: return Int32(ARAPACK_ROUND_Q8_0)
        case .q4_K, .q5_K, .q6_K: return Int32(ARAPACK_ROUND_Q8_K)
        case .f16: return Int32(ARAPACK_ROUND_F16)
        case .bf16: return Int32(ARAPACK_ROUND_BF16)
        case .f32: return 0
        }
    }

    /// The weights' type as a release names it: a quantized GGUF file's scheme (`q8_0`, `q4_k_m`, …), else the torch
    /// dtype name (`float32`, `bfloat16`, …), or the quantization of a bundle's linear weights (`int8`, `int4`).
    public var weightTypeName: String {
        if let scheme = ggufScheme, scheme.quantizes { return scheme.name }
        if let quantization { return quantization.scheme.rawValue }
        return TorchGlobals.dtypeName[dominantDType] ?? dominantDType.name
    }

    /// The scheme a GGUF source was written in (nil for other sources, or a GGUF file no scheme describes).
    public var ggufScheme: GGUFScheme? {
        guard let gguf = source as? GGUFFile else { return nil }
        return GGUFScheme.of(gguf, config: config, tied: tied)
    }

    /// What the model is, as a parity report names the side it checks: `GGUF file`, `GPT-2 bundle` or `bundle`.
    public var formTitle: String {
        if source is GGUFFile { return "GGUF file" }
        return layout == .gpt2 ? "GPT-2 bundle" : "bundle"
    }

    /// A source tensor, dequantized to float32 when it is quantized, transposed back when its layout stores it
    /// transposed (an owned copy; the mapped pages it came from are dropped).
    private static func read(_ source: TensorSource, _ name: String, parts: ModelFamily.QuantizedParts?, transposed: Bool) throws -> Tensor {
        let t = try source.tensor(named: name)
        if transposed, t.shape.count == 2 {
            defer { t.storage.discardMappedPages() }
            return try t.transposed()
        }
        guard let parts else { return t }
        return try LinearQuantization.dequantize(t, scale: try source.tensor(named: parts.scale), shape: try parts.shape.map { try source.tensor(named: $0) },
                                                 name: display(source, name))
    }

    /// A source tensor as errors name it: its file, then its name.
    private static func display(_ source: TensorSource, _ name: String) -> String {
        (source.filePath(of: name).map { $0 + ": " } ?? "") + name
    }

    /// Top-level entries of a training dict that are not tensors or optimizer state, as JSON.
    static func trainingMetadata(_ ckpt: TorchCheckpoint) -> [JSONValue.Member] {
        guard ckpt.stateDictKey != nil, case let .dict(d) = ckpt.root else { return [] }
        var out: [JSONValue.Member] = []
        for (k, v) in d.entries {
            guard let key = k.stringValue, key != ckpt.stateDictKey,
                  !["optimizer", "optimizer_state_dict", "optim", "lr_scheduler", "scheduler", "scaler"].contains(key) else { continue }
            switch v {
            case .none, .bool, .int, .float, .string, .dict, .list, .tuple:
                let j = v.json(budget: 10_000)
                if !Self.containsOpaque(j) { out.append(.init(key, j)) }
            default: continue
            }
        }
        return out
    }

    /// Whether a JSON rendering holds placeholders for non-plain values (tensors, objects).
    private static func containsOpaque(_ v: JSONValue) -> Bool {
        switch v {
        case let .string(s): return s.hasPrefix("<") && s.hasSuffix(">") || s == "…"
        case let .array(a): return a.contains(where: containsOpaque)
        case let .object(m): return m.contains { containsOpaque($0.value) }
        default: return false
        }
    }

    /// "max |difference| 0.25 at element 17" for two same-shaped floating tensors.
    static func difference(_ a: Tensor, _ b: Tensor) throws -> String {
        guard a.shape == b.shape else { return "shapes \(a.shape) and \(b.shape)" }
        let x = try a.floats(), y = try b.floats()
        var worst = -1.0, at = 0
        for i in 0..<x.count {
            let d = x[i].isNaN != y[i].isNaN ? Double.infinity : Double(abs(x[i] - y[i]))
            if d > worst || d.isNaN { worst = d; at = i }
        }
        return "max |difference| \(worst) at element \(at)"
    }

}

/// Reads and parses a JSON file of at most `BundleContents.maximumJSONSize` bytes, naming the file in any error.
public func readJSON(_ path: String) throws -> JSONValue {
    let file = try MappedFile(path: path)
    guard file.count <= BundleContents.maximumJSONSize else { throw BundleError.jsonTooLarge(file: path, limit: BundleContents.maximumJSONSize) }
    do {
        return try file.withUnsafeBytes { try JSONParser.parse($0) }
    } catch let e as JSONError {
        throw BundleError.invalidJSON(file: path, detail: "\(e)")
    }
}

extension ForwardPass {
    /// The reference forward pass over a model read from any source, its work split into `threads`.
    /// A GGUF file's pass computes GELU as llama.cpp does (docs/model-family.md, "The GGUF form").
    /// A GGUF file's products also round their activations as llama.cpp's CPU kernels do for each tensor's type
    /// (float16 for F16, bfloat16 for BF16, Q8_0 blocks for Q8_0): the pass computes what llama.cpp computes.
    /// Quantized matrices are decoded a run of rows at a time (`ReleaseModel.rowDecoder`), with no float32 copy.
    public convenience init(_ model: ReleaseModel, threads: Int = ForwardPass.defaultThreads) throws {
        try self.init(config: model.config, threads: threads, llamaCppGELU: model.computesLlamaCppGELU,
                      inputRounding: model.llamaCppInputRounding, rowDecoder: model.rowDecoder, tensor: model.tensor)
    }
}

/// A source that is not a releasable AraFusion model.
public enum ReleaseModelError: Error, Equatable, CustomStringConvertible, Sendable {
    case sameTrainingName(path: String, first: String, second: String, training: String)
    case notAraFusion(path: String, tensorCount: Int, found: String)
    case untied(path: String, head: String, embedding: String, difference: String)
    /// What the family's shape check found (a tensor missing, unexpected or of the wrong shape).
    case tensors(path: String, problem: String)
    case noTensor(path: String, name: String)

    public var description: String {
        switch self {
        case let .sameTrainingName(path, a, b, training): return "\(path): tensors \"\(a)\" and \"\(b)\" both name \"\(training)\" once wrappers are removed"
        case let .notAraFusion(path, count, found): return "\(path): not an AraFusion model: none of its \(count) tensors is \(ModelFamily.embedding) (found \(found))"
        case let .untied(path, head, embedding, difference):
            return "\(path): the model is untied: \(head) differs from \(embedding) (\(difference)); pass --allow-untied to release it with tie_word_embeddings false"
        case let .tensors(path, problem): return "\(path): \(problem)"
        case let .noTensor(path, name): return "\(path): no tensor \(name)"
        }
    }
}

/// `--config` held inline JSON that does not parse (exit 2).
public struct ConfigArgumentError: Error, CustomStringConvertible, Sendable {
    public let argument: String
    public let problem: String
    public var description: String { "--config \(String(argument.prefix(200)).escapingControlCharacters): not a file, and not JSON either: \(problem)" }
}
