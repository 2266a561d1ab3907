import ArapackFormats
import ArapackModel
import ArapackTensor
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The arapack version recorded in manifests.
public let arapackVersion = "0.1.0"

/// Options of a release bundle.
public struct BundleOptions: Sendable {
    /// The dtype of the floating weights; nil keeps the source's (and its quantization, when `quantization` is nil).
    public var dtype: DType?
    /// Shard model.safetensors past this many bytes of tensor data; nil never shards.
    public var maxShardSize: Int?
    /// Whether to record the SHA-256 of the source in the manifest (null otherwise).
    public var sourceDigest: Bool
    /// The quantization of the nn.Linear weights (int8, int4), and glob patterns of (release) names kept in float32.
    public var quantization: LinearQuantization?
    public var keep: [String]
    /// The bundle form written: the native bundle or transformers' stock GPT-2 layout.
    public var form: any BundleForm
    /// The model card: the bundle's name, the license, the base model, or the user's own card.
    public var card: ModelCard.Options
    public init(dtype: DType? = nil, maxShardSize: Int? = nil, sourceDigest: Bool = true,
                quantization: LinearQuantization? = nil, keep: [String] = [], form: any BundleForm = NativeBundle(),
                card: ModelCard.Options = .init()) {
        self.form = form
        self.card = card
        self.dtype = dtype
        self.maxShardSize = maxShardSize
        self.sourceDigest = sourceDigest
        self.quantization = quantization
        self.keep = keep
    }

    /// Whether `name` matches a --keep pattern.
    func kept(_ name: String) -> Bool { keep.contains { fnmatch($0, name, 0) == 0 } }
}

/// Writes a release bundle (docs/bundle.md) into a folder: model.safetensors (or shards + index), config.json,
/// generation_config.json, training_metadata.json, the tokenizer files and manifest.json, every byte
/// a function of the source and the options (no times, hosts or absolute paths).
public enum BundleWriter {

    /// Writes the bundle into the existing empty folder `directory`; returns the manifest written. `parity`, when
    /// given, runs once the weights, configs and tokenizer are in place (it reads the folder as a bundle) and
    /// returns the parity summary that the model card and the manifest then record (it throws to stop).
    @discardableResult
    public static func write(_ model: ReleaseModel, tokenizer: TokenizerFiles?, options: BundleOptions,
                             into directory: String, progress: Progress,
                             parity: ((_ directory: String) throws -> ParitySummary)? = nil) throws -> Manifest {
        // The source digest runs on the second core while the model is written.
        let sourceDigest = options.sourceDigest ? model.sourceDigest() : nil
        let (quantization, dtype) = weightTypes(model, options)
        let dtypeName = quantization?.scheme.rawValue ?? TorchGlobals.dtypeName[dtype] ?? dtype.name
        let form = options.form, layout = form.layout
        try form.check(model.config, dtype: quantization?.scheme.rawValue ?? dtype.name.lowercased(), source: model.info.path)
        var files: [WrittenFile] = []
        let records = RecordBox()
        let (pending, ignored) = try pendingTensors(model, dtype: dtype, quantization: quantization, options: options, records: records, progress: progress)
        progress.begin("writing weights", total: pending.reduce(0) { $0 + $1.byteCount })
        var metadata = ["format": "pt"]
        if model.tied {
            metadata[layout.name(of: ModelFamily.lmHead)] = layout.name(of: ModelFamily.embedding)
        }
        files += try SafetensorsWriter.writeSharded(pending, metadata: metadata, directory: directory, maxShardSize: options.maxShardSize)
        progress.end()

        // The LM head is an nn.Linear the "Linear" target would match; tied (or kept float32) it is not quantized.
        let quantizationConfig = quantization.map {
            [JSONValue.Member("quantization_config", $0.configJSON(ignored: [layout.name(of: ModelFamily.module(of: ModelFamily.lmHead))] + ignored))]
        } ?? []
        files.append(try writeJSON(form.configJSON(model.config, torchDtype: TorchGlobals.dtypeName[dtype] ?? dtype.name, extra: quantizationConfig),
                                   to: directory + "/config.json"))
        files.append(try writeJSON(generationConfig(model.config), to: directory + "/generation_config.json"))
        files.append(try writeJSON(.object(model.trainingMetadata), to: directory + "/training_metadata.json"))
        if let tokenizer { files += try copy(tokenizer, into: directory) }
        // Parity runs while the source digest finishes on the other core; the card and the manifest need both.
        let paritySummary = try parity?(directory)
        progress.begin("hashing the source", total: 0)
        let source = Manifest.Source(file: splitPath(trimmingTrailingSlashes(model.info.path)).1, format: model.info.format,
                                     sha256: try sourceDigest.map { try $0.wait() }, step: model.step)
        progress.end()
        let recorded = records.sorted
        let report = recorded.isEmpty ? nil : QuantizationReport(method: quantization?.method ?? "cast to \(dtypeName), round to nearest even",
                                                                 tensors: recorded)
        for (name, bytes) in form.extraFiles { files.append(try writeBytes(bytes, to: directory + "/" + name)) }
        if let log = options.card.trainingLog {
            for (name, bytes) in TrainingPlots.render(log) { files.append(try writeBytes(bytes, to: directory + "/" + name)) }
        }
        files.append(try writeText(ModelCard.gitAttributes(files), to: directory + "/" + ModelCard.gitAttributesFileName))
        let card = options.card.userCard
            ?? ModelCard(model: model, form: form, dtype: dtypeName, options: options.card, tokenizer: tokenizer,
                         sourceDigest: source.sha256, quantization: report, parity: paritySummary, files: files)
        files.append(try writeText(card.text, to: directory + "/" + ModelCard.fileName))
        let manifest = Manifest(config: model.config, form: form, dtype: dtypeName, source: source, files: files,
                                quantization: report, parity: paritySummary)
        try writeText(manifest.text, to: directory + "/" + Manifest.fileName)
        return manifest
    }

    /// The quantization of the linear weights and the dtype of the others: a quantized bundle states float32 (what
    /// its weights dequantize to); without --dtype the source's (and its quantization) stay.
    static func weightTypes(_ model: ReleaseModel, _ options: BundleOptions) -> (LinearQuantization?, DType) {
        let quantization = options.quantization ?? (options.dtype == nil ? model.quantization : nil)
        return (quantization, quantization == nil ? options.dtype ?? model.dominantDType : .f32)
    }

    /// Refuses what `write` would refuse of `model` before it writes a byte (the form's rules, a group size that does
    /// not divide a weight's columns), without reading tensor data.
    public static func check(_ model: ReleaseModel, options: BundleOptions) throws {
        let (quantization, dtype) = weightTypes(model, options)
        try options.form.check(model.config, dtype: quantization?.scheme.rawValue ?? dtype.name.lowercased(), source: model.info.path)
        _ = try pendingTensors(model, dtype: dtype, quantization: quantization, options: options, records: RecordBox(), progress: Progress(enabled: false))
    }

    /// The tensors of the bundle, each to be cast (or quantized) as it is written, and the names of the linear
    /// modules kept unquantized in a quantized bundle.
    static func pendingTensors(_ model: ReleaseModel, dtype: DType, quantization: LinearQuantization?, options: BundleOptions, records: RecordBox,
                               progress: Progress) throws -> (pending: [PendingTensor], ignored: [String]) {
        let layout = options.form.layout
        var pending: [PendingTensor] = []
        var ignored: [String] = []
        let caster = TensorCaster()
        for (training, _) in model.names {
            let trainingShape = try model.shape(of: training)
            let shape = layout.storedShape(of: training, trainingShape)
            let name = layout.name(of: training)
            let transposed = layout.isTransposed(training)
            if let quantization, ModelFamily.isLinearModuleWeight(training) {
                if !options.kept(name) {
                    pending += try quantized(model, training, name: name, shape: shape, q: quantization, caster: caster, records: records, progress: progress)
                    continue
                }
                ignored.append(ModelFamily.module(of: name))
            }
            // Quantized bundles: the matrices compressed-tensors cannot load quantized (the tied embedding, in_proj_weight)
            // as bfloat16, transformers upcasting them to the float32 the config states; vectors, the position
            // table and --keep'd tensors float32.
            let bf16InQuantized = shape.count == 2 && training != ModelFamily.positionEmbedding && !ModelFamily.isLinearModuleWeight(training) && !options.kept(name)
            let target = quantization != nil ? (bf16InQuantized ? DType.bf16 : .f32) : dtype
            let narrowing = target == .bf16 || target == .f16
            pending.append(PendingTensor(name: name, dtype: target, shape: shape) { out in
                let t = try model.tensor(training)
                caster.error = narrowing && t.dtype != target ? QuantizationRecord.Accumulator() : nil
                if transposed {
                    try caster.writeTransposed(t, as: target, name: name, file: out.destination) { try out.write($0) }
                } else {
                    try caster.write(t, as: target, name: name, to: out)
                }
                if let e = caster.error {
                    records.add(e.record(name, before: t.byteCount, after: Shape.byteCount(shape, dtype: target)!))
                }
                progress.advance(Shape.byteCount(shape, dtype: target)!)
            })
        }
        return (pending, ignored)
    }

    /// The tokenizer's files, copied into the bundle (and its base_tokenizer/ folder).
    static func copy(_ tokenizer: TokenizerFiles, into directory: String) throws -> [WrittenFile] {
        let sub = directory + "/" + TokenizerFiles.subfolder
        guard mkdir(sub, 0o755) == 0 else { throw FileError(path: sub, operation: "mkdir", code: errno) }
        return try tokenizer.copies.map { copy in
            try copyFile(tokenizer.directory + "/" + copy.from, to: directory + "/" + copy.to, name: copy.to)
        }
    }

    /// The pending tensors of one quantized weight: int8's I8 values and F32 scale, or int4's I32 words, F32 scale
    /// and I64 shape. The scales are computed by whichever tensor is written first and kept for the other.
    /// A source quantized the same way keeps its tensors as they are (quantizing its dequantized values again would
    /// not give them back: int4's scale is max|x| / 7.5 and its values reach -8).
    static func quantized(_ model: ReleaseModel, _ training: String, name: String, shape: [Int], q: LinearQuantization,
                          caster: TensorCaster, records: RecordBox, progress: Progress) throws -> [PendingTensor] {
        if model.quantization == q, let stored = try model.quantizedTensors(training) {
            let bytes = stored.reduce(0) { $0 + $1.tensor.byteCount }
            records.add(QuantizationRecord(name: name, maxAbsError: 0, snrDB: .infinity, bytesBefore: bytes, bytesAfter: bytes))
            return stored.map { part in
                PendingTensor(name: name + part.suffix, dtype: part.tensor.dtype, shape: part.tensor.shape) { out in
                    try part.tensor.withUnsafeBytes { try out.write($0) }
                    progress.advance(part.tensor.byteCount)
                }
            }
        }
        let scaleShape = try q.scaleShape(shape, name: name)
        let rows = shape[0], cols = shape[1]
        final class Scales: @unchecked Sendable { var values: [Float]?; var uses = 0 }
        let cache = Scales()
        func scales() throws -> [Float] {
            defer { cache.uses += 1; if cache.uses == 2 { cache.values = nil } }
            if let v = cache.values { return v }
            var all: [Float] = []
            all.reserveCapacity(scaleShape[0] * scaleShape[1])
            try caster.floatRows(try model.tensor(training), rowLength: cols) { range, values in
                all += q.scales(of: values, rows: range.count, cols: cols)
            }
            cache.values = all
            return all
        }
        let scaleBytes = scaleShape[0] * scaleShape[1] * 4
        let packed = q.scheme == .int4
        let storedShape = packed ? [rows, cols / LinearQuantization.int4PerWord] : shape
        let storedBytes = packed ? rows * cols / 2 : rows * cols
        var pending = [
            PendingTensor(name: name + LinearQuantization.scaleSuffix, dtype: .f32, shape: scaleShape) { out in
                try scales().withUnsafeBytes { try out.write($0) }
                progress.advance(scaleBytes)
            },
            PendingTensor(name: packed ? name + LinearQuantization.packedSuffix : name, dtype: packed ? .i32 : .i8, shape: storedShape) { out in
                let s = try scales()
                let t = try model.tensor(training)
                var error = QuantizationRecord.Accumulator()
                let capacity = max(1, TensorCaster.sliceElements / cols + 1) * cols
                let buffer = UnsafeMutableBufferPointer<Int8>.allocate(capacity: capacity)
                let words = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: packed ? capacity / LinearQuantization.int4PerWord : 0)
                defer { buffer.deallocate(); words.deallocate() }
                try caster.floatRows(t, rowLength: cols) { range, values in
                    let qs = UnsafeMutableBufferPointer(rebasing: buffer[0..<(range.count * cols)])
                    q.quantize(values, rows: range, cols: cols, scales: s, into: qs, error: &error)
                    if packed {
                        let ws = UnsafeMutableBufferPointer(rebasing: words[0..<(qs.count / LinearQuantization.int4PerWord)])
                        LinearQuantization.packInt4(qs, into: ws)
                        try out.write(UnsafeRawBufferPointer(ws))
                    } else {
                        try out.write(UnsafeRawBufferPointer(qs))
                    }
                }
                records.add(error.record(name, before: rows * cols * t.dtype.byteSize, after: storedBytes + scaleBytes + (packed ? 16 : 0)))
                progress.advance(storedBytes)
            },
        ]
        if packed {
            pending.append(PendingTensor(name: name + LinearQuantization.shapeSuffix, dtype: .i64, shape: [2]) { out in
                try [Int64(rows), Int64(cols)].map(\.littleEndian).withUnsafeBytes { try out.write($0) }
            })
        }
        return pending
    }

    /// generation_config.json (docs/bundle.md): sampling defaults, the special ids and a length: a plain
    /// `generate(ids)` runs up to the model's positions (transformers' own default stops at 20 tokens).
    static func generationConfig(_ c: ModelConfig) -> JSONValue {
        .object(generationIDs.map { .init($0.stringValue, c.value(of: $0)) } + [
            .init("do_sample", .bool(true)), .init("temperature", .double(0.8)), .init("top_p", .double(0.9)),
            .init("max_length", .int(c.maxPositions)),
        ])
    }

    /// The special ids generation_config.json repeats from config.json.
    static let generationIDs: [ModelConfig.Field] = [.bos, .eos, .pad]

    /// Writes pretty JSON plus a newline.
    @discardableResult
    static func writeJSON(_ value: JSONValue, to path: String) throws -> WrittenFile {
        try writeText(value.serialized(pretty: true) + "\n", to: path)
    }

    /// Copies a file byte for byte.
    static func copyFile(_ from: String, to path: String, name: String) throws -> WrittenFile {
        let file = try MappedFile(path: from)
        let out = try AtomicFileWriter(destination: path, hashing: true)
        try file.withUnsafeBytes { try out.write($0) }
        try out.commit()
        return WrittenFile(name: name, size: out.bytesWritten, sha256: out.sha256!)
    }
}


/// Quantization records gathered while tensors are written.
final class RecordBox: @unchecked Sendable {
    private var records: [QuantizationRecord] = []
    func add(_ r: QuantizationRecord) { records.append(r) }
    var sorted: [QuantizationRecord] { records.sorted { $0.name < $1.name } }
}
