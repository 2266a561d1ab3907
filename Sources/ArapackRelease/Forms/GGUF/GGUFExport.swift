import ArapackFormats
import ArapackModel
import ArapackTensor
import CKernels
import Dispatch

/// What a GGUF file is written as.
public struct GGUFOptions: Sendable {
    /// The matrices' type or llama.cpp's mix of types (nil: the source's floating dtype); vectors and the position
    /// table are always float32.
    public var scheme: GGUFScheme?
    /// Write the file although llama.cpp would tokenize differently from the tokenizer (recorded in the file).
    public var allowTokenizerMismatch = false
    /// `general.name` (the release's name).
    public var name: String?

    public init(scheme: GGUFScheme?, allowTokenizerMismatch: Bool = false, name: String? = nil) {
        self.scheme = scheme
        self.allowTokenizerMismatch = allowTokenizerMismatch
        self.name = name
    }
}

/// Writes an AR model as one GGUF file for llama.cpp's `gpt2` architecture (docs/model-family.md, "The GGUF form"):
/// its metadata, the tokenizer, the tensors under llama.cpp's names with the tie stored once. Streams like every
/// other writer: each tensor cast or quantized slice by slice as it is written, atomically.
public enum GGUFExport {
    /// The metadata key recording why llama.cpp tokenizes differently, in a file written with the mismatch allowed.
    public static let mismatchKey = "arapack.tokenizer_mismatch"

    /// What every file says about how llama.cpp computes it.
    public static let description = "An AraFusion AR model, converted by arapack. llama.cpp's gpt2 graph computes GELU with the tanh approximation, read from a float16 table, where AraFusion uses exact erf GELU: logits differ slightly (on the trained twin, in float32: mean KL 1.2e-6, max |logit difference| 0.035, top-1 agreement 1.0; arapack's docs/releases.md)."

    /// What a written file's tokenizer does otherwise than the source's: the mismatch written with it, if any, and
    /// the notes on what llama.cpp does otherwise (`GGUFTokenizer.notes`).
    public struct Written: Sendable {
        public let mismatch: String?
        public let tokenizerNotes: [String]
    }

    /// Refuses what `write` would refuse before it writes a byte: a model llama.cpp's graph cannot compute, no
    /// tokenizer, or one llama.cpp would tokenize otherwise (unless allowed). Returns the tokenizer's metadata.
    @discardableResult
    static func check(_ model: ReleaseModel, options: GGUFOptions) throws -> GGUFTokenizer {
        try GGUFRelease().check(model.config, dtype: nil, source: model.info.path)
        guard let tokenizerFiles = model.tokenizer else { throw GGUFExportError.noTokenizer(source: model.info.path) }
        let tokenizer = try GGUFTokenizer(readJSON(tokenizerFiles.tokenizerJSON), file: tokenizerFiles.tokenizerJSON, config: model.config)
        if let mismatch = tokenizer.mismatch, !options.allowTokenizerMismatch {
            throw GGUFExportError.tokenizer(file: tokenizerFiles.tokenizerJSON, reason: mismatch)
        }
        return tokenizer
    }

    /// Writes `model` to `path`.
    @discardableResult
    public static func write(_ model: ReleaseModel, options: GGUFOptions, to path: String, replacing: Bool, progress: Progress) throws -> Written {
        let config = model.config
        let tokenizer = try check(model, options: options)
        let scheme = options.scheme ?? GGUFScheme.keeping(model.dominantDType)
        var metadata: [(key: String, value: GGUF.Value)] = [
            ("general.architecture", .string("gpt2")),
            ("general.name", .string(options.name ?? config.defaultReleaseName)),
            ("general.description", .string(description + (tokenizer.mismatch.map { " Its tokenizer is not the training tokenizer's exactly: " + $0 + "." } ?? ""))),
            ("general.file_type", .uint32(scheme.fileType)),
        ]
        if scheme.quantizes { metadata.append(("general.quantization_version", .uint32(2))) }
        metadata += Self.metadata(config, GGUFConfigKey.sizes)
        metadata += tokenizer.metadata
        if let mismatch = tokenizer.mismatch { metadata.append((mismatchKey, .string(mismatch))) }

        let caster = TensorCaster()
        var pending: [PendingGGUFTensor] = []
        for (training, shape) in ModelFamily.expectedShapes(config) where !(training == ModelFamily.lmHead && model.tied) {
            let type = scheme.type(of: training, shape: shape, layers: config.layers, tied: model.tied)
            let name = NamingLayout.gguf.name(of: training)
            pending.append(PendingGGUFTensor(name: name, shape: shape, type: type) { out in
                let t = try model.tensor(training)
                if let dtype = type.dtype {
                    try caster.write(t, as: dtype, name: name, to: out)
                } else {
                    try Self.writeBlocks(t, as: type, name: name, caster: caster, to: out)
                }
                progress.advance(type.byteCount(elements: shape.reduce(1, *))!)
            })
        }
        progress.begin("writing GGUF", total: pending.reduce(0) { $0 + $1.byteCount })
        try GGUFWriter.write(metadata: metadata, tensors: pending, to: path, replacing: replacing)
        progress.end()
        return Written(mismatch: tokenizer.mismatch, tokenizerNotes: tokenizer.notes)
    }

    /// Encodes `blocks` blocks of `values` into `out`, the blocks split between `threads` (each block depends only on
    /// its own values: the same bytes for any split). Returns the first block holding a NaN or infinity, or −1.
    static func encode(_ type: GGUF.TensorType, _ values: UnsafeBufferPointer<Float>, blocks: Int, into out: UnsafeMutableRawBufferPointer, threads: Int) -> Int {
        let parts = min(threads, max(1, blocks / 64))
        let per = (blocks + parts - 1) / parts
        let firstBad = UnsafeMutableBufferPointer<Int>.allocate(capacity: parts)
        defer { firstBad.deallocate() }
        // Each part reads its own blocks' values and writes its own blocks' bytes and its own slot.
        nonisolated(unsafe) let input = values.baseAddress!, output = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        nonisolated(unsafe) let slots = firstBad
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = part * per, count = max(0, min(per, blocks - start))
            let bad = count == 0 ? -1 : arapack_gguf_encode(Int32(type.rawValue), input + start * type.blockElements, count, output + start * type.blockBytes)
            slots[part] = bad < 0 ? -1 : start + Int(bad)
        }
        return firstBad.first { $0 >= 0 } ?? -1
    }

    /// Streams `t` as blocks of `type` along its rows, a slice of whole rows at a time.
    static func writeBlocks(_ t: Tensor, as type: GGUF.TensorType, name: String, caster: TensorCaster, to out: AtomicFileWriter) throws {
        let columns = t.shape.last!
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: type.byteCount(elements: max(TensorCaster.sliceElements, columns))!, alignment: 16)
        defer { buffer.deallocate() }
        let threads = max(1, ForwardPass.defaultThreads)
        try caster.floatRows(t, rowLength: columns) { rows, values in
            let blocks = values.count / type.blockElements
            let bad = Self.encode(type, values, blocks: blocks, into: buffer, threads: threads)
            guard bad < 0 else {
                throw GGUFExportError.nonFinite(file: out.destination, tensor: name, type: type.name, row: rows.lowerBound + Int(bad) * type.blockElements / columns)
            }
            try out.write(UnsafeRawBufferPointer(rebasing: buffer[0..<(blocks * type.blockBytes)]))
        }
    }
}

/// Why a model or its tokenizer has no GGUF form (exit 2, before anything is written).
public enum GGUFExportError: Error, Equatable, CustomStringConvertible, Sendable {
    case noTokenizer(source: String)
    case tokenizer(file: String, reason: String)
    case nonFinite(file: String, tensor: String, type: String, row: Int)

    public var description: String {
        switch self {
        case let .noTokenizer(source):
            return "\(source): a GGUF file carries its tokenizer: pass --tokenizer DIR (or convert from a bundle that has one)"
        case let .tokenizer(file, reason):
            return "\(file): llama.cpp would not tokenize text as this tokenizer does: \(reason); pass --allow-tokenizer-mismatch to write it anyway (the file records why)"
        case let .nonFinite(file, tensor, type, row):
            return "\(file): tensor \(tensor) holds NaN or infinity (row \(row)); \(type) cannot store it"
        }
    }
}

extension GGUFExport {
    /// The metadata of `keys` for `config`: integers as uint32, the eps as float32.
    static func metadata(_ config: ModelConfig, _ keys: [GGUFConfigKey]) -> [(key: String, value: GGUF.Value)] {
        keys.map { key in
            let value = config.value(of: key.field)
            return (key.stringValue, value.intValue.map { .uint32(UInt32($0)) } ?? .float32(Float(value.doubleValue!)))
        }
    }
}
