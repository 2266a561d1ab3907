import ArapackTensor

/// What `arapack inspect` reports about a source: its files, metadata, tensor table and totals,
/// and with a data check, SHA-256 of every file and NaN/Inf counts of every floating tensor.
public struct InspectReport: Sendable {
    /// One file read.
    public struct File: Sendable {
        public var path: String
        public var bytes: Int
        public var sha256: String?
    }

    /// One tensor.
    public struct Row: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var bytes: Int
        public var file: String?
        public var nonFinite: Int?
        /// The earlier tensor whose storage this one views (a tied pair); not counted again in totals.
        public var sharesWith: String?
        /// The type the file stores, where it differs from the dtype read (a GGUF's `Q8_0` blocks are read as F32).
        public var storedType: String?
        /// The type as listed: the stored one.
        public var typeName: String { storedType ?? dtype.name }
        /// The model parameters this tensor holds: its elements, except in a quantized layer's group
        /// (compressed-tensors), where a packed int4 word holds several and the scales, zero points and
        /// shape are not parameters.
        public var parameters: Int
    }

    /// Totals for one stored type.
    public struct DTypeTotal: Sendable {
        /// The stored type's name (`F32`, `BF16`, `Q8_0`, …).
        public var name: String
        var rank: Int
        public var tensors = 0
        public var elements = 0
        public var parameters = 0
        public var bytes = 0
    }

    public var path: String
    public var format: String
    /// Checkpoint structure (torch sources only).
    public var checkpoint: CheckpointSummary?
    /// Every global the pickle names (pickle-bearing sources only).
    public var globals: [GlobalReportRow]?

    /// The globals that are not on the allow-list (the reason a checkpoint is refused).
    public var refusedGlobals: [GlobalReportRow] { (globals ?? []).filter { $0.safety != .safe } }
    public var files: [File]
    public var metadata: [String: String]
    public var tensors: [Row]

    public init(path: String, format: String, files: [File], metadata: [String: String], tensors: [Row]) {
        self.path = path
        self.format = format
        self.files = files
        self.metadata = metadata
        self.tensors = tensors
    }

    /// The report for a pickle-bearing file refused for its globals: only the globals are known.
    public static func refused(path: String, globals: [GlobalReportRow]) throws -> InspectReport {
        var r = InspectReport(path: path, format: "torch", files: [File(path: path, bytes: try fileSize(path))], metadata: [:], tensors: [])
        r.globals = globals
        return r
    }

    /// Totals per dtype, highest writer rank first.
    public var dtypeTotals: [DTypeTotal] {
        var totals: [String: DTypeTotal] = [:]
        for r in tensors where r.sharesWith == nil {
            var t = totals[r.typeName] ?? DTypeTotal(name: r.typeName, rank: r.storedType == nil ? r.dtype.writeRank : -1)
            t.tensors += 1
            t.elements += Shape.elementCount(r.shape) ?? 0
            t.parameters += r.parameters
            t.bytes += r.bytes
            totals[r.typeName] = t
        }
        return totals.values.sorted { ($0.rank, $1.name) > ($1.rank, $0.name) }
    }

    /// Parameters over all tensors, each shared storage view counted once (the tied matrix once).
    public var parameterCount: Int { tensors.filter { $0.sharesWith == nil }.reduce(0) { $0 + $1.parameters } }

    /// Stored elements over all tensors, each shared storage view counted once: the parameters, unless
    /// quantized layers pack several into a word or carry scales.
    public var elementCount: Int { tensors.filter { $0.sharesWith == nil }.reduce(0) { $0 + (Shape.elementCount($1.shape) ?? 0) } }

    /// Tensor bytes over all tensors, each shared storage view counted once.
    public var tensorBytes: Int { tensors.filter { $0.sharesWith == nil }.reduce(0) { $0 + $1.bytes } }

    /// Opens `path` and builds its report. When a checkpoint is refused for the globals its pickle names,
    /// the report lists those globals and `refusal` carries the error (the CLI prints both, then exits 2).
    public static func inspect(path: String, checkData: Bool) throws -> (report: InspectReport, refusal: Error?) {
        do {
            let source = try SourceDetection.open(path)
            return (try build(source: source, path: path, checkData: checkData), nil)
        } catch let error as TorchError {
            guard case .unsafePickle = error, try SourceDetection.detect(path).format == .torchZip,
                  let globals = try? TorchCheckpoint.scanGlobals(path: path), globals.contains(where: { $0.safety != .safe })
            else { throw error }
            return (try refused(path: path, globals: globals), error)
        }
    }

    /// Builds the report for `source` found at `path`. With `checkData`, every file is hashed and
    /// every floating tensor scanned (the two run concurrently).
    public static func build(source: TensorSource, path: String, checkData: Bool) throws -> InspectReport {
        var rows: [Row] = []
        for name in source.tensorNames {
            let d = try source.descriptor(named: name)
            let file = source.filePaths.count > 1 ? source.filePath(of: name).map { splitPath($0).1 } : nil
            rows.append(Row(name: name, dtype: d.dtype, shape: d.shape, bytes: d.byteCount, file: file,
                            parameters: Shape.elementCount(d.shape) ?? 0))
        }
        try countQuantizedParameters(&rows, source: source)
        var files: [File] = []
        for p in source.filePaths { files.append(File(path: p, bytes: try fileSize(p))) }
        var metadata: [String: String] = [:]
        if let s = source as? SafetensorsFile { metadata = s.metadata }
        if let s = source as? ShardedSafetensors { metadata = s.shards.first?.file.metadata ?? [:] }
        if let g = source as? GGUFFile {
            // Strings whole (the text report shortens them, the JSON never does); arrays by their length.
            for (key, value) in g.metadata { metadata[key] = value.stringValue ?? value.summary }
            // Each tensor as stored: its GGUF type and the bytes it takes in the file.
            for e in g.entries {
                guard let i = rows.firstIndex(where: { $0.name == e.name }) else { continue }
                rows[i].storedType = e.type.name
                rows[i].bytes = e.range.count
            }
        }
        var report = InspectReport(path: path, format: source.formatName, files: files, metadata: metadata, tensors: rows)
        if let ckpt = source as? TorchCheckpoint {
            report.checkpoint = ckpt.summary
            for group in ckpt.sharedGroups {
                for name in group.dropFirst() {
                    if let i = report.tensors.firstIndex(where: { $0.name == name }) { report.tensors[i].sharesWith = group[0] }
                }
            }
            // The strict open already met every global (it stops only at a refused one).
            report.globals = ckpt.globals.map(GlobalReportRow.init)
        }
        if checkData { try report.checkData(source) }
        return report
    }

    /// Suffixes compressed-tensors gives the companions of a quantized layer's weight: its scales, zero
    /// points, group order and logical shape, none of them parameters.
    static let quantizationCompanions = ["weight_scale", "weight_zero_point", "weight_g_idx", "weight_shape"]

    /// Sets the parameter count of each quantized layer's tensors, recognised as compressed-tensors stores them:
    /// `P.weight_packed` (int4 values, 8 to an int32 word) beside `P.weight_shape`, the logical `[rows, columns]`,
    /// or an 8-bit `P.weight` beside `P.weight_scale`. The packed weight holds `rows × columns` parameters; the
    /// companions hold none. A packed weight whose shape tensor is missing or disagrees keeps its element count.
    private static func countQuantizedParameters(_ rows: inout [Row], source: TensorSource) throws {
        let index = Dictionary(rows.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (i, row) in rows.enumerated() {
            let prefix: Substring
            if row.name.hasSuffix(".weight_packed") {
                prefix = row.name.dropLast("weight_packed".count)
                if let s = index[prefix + "weight_shape"], rows[s].dtype == .i64, rows[s].shape == [2],
                   let logical = try? source.tensor(named: rows[s].name).integers(as: Int64.self),
                   logical.allSatisfy({ $0 > 0 && $0 <= Int64(Int32.max) }),
                   let count = Shape.elementCount(logical.map { Int($0) }), row.shape.count == 2, row.shape[0] == Int(logical[0]),
                   row.shape[1] > 0, (row.shape[1]...row.shape[1] * 16).contains(Int(logical[1])) {
                    rows[i].parameters = count
                }
            } else if row.name.hasSuffix(".weight"), row.dtype == .i8 || row.dtype == .u8, index[row.name + "_scale"] != nil {
                prefix = row.name.dropLast("weight".count)
            } else {
                continue
            }
            for companion in quantizationCompanions {
                if let c = index[prefix + companion] { rows[c].parameters = 0 }
            }
        }
    }

    /// Hashes every file and counts NaN/Inf per tensor in one streaming pass per safetensors file.
    private mutating func checkData(_ source: TensorSource) throws {
        var shards: [String: SafetensorsFile] = [:]
        if let s = source as? SafetensorsFile { shards[s.path] = s }
        if let s = source as? ShardedSafetensors { for shard in s.shards { shards[shard.file.path] = shard.file } }
        var counts: [String: Int] = [:]
        for i in files.indices {
            if let shard = shards[files[i].path] {
                let check = try shard.checkData()
                files[i].sha256 = check.sha256
                counts.merge(check.nonFinite) { $1 }
            } else {
                files[i].sha256 = try SHA256.hex(ofFile: files[i].path)
            }
        }
        for i in tensors.indices {
            tensors[i].nonFinite = try counts[tensors[i].name] ?? source.tensor(named: tensors[i].name).nonFiniteCount()
        }
    }
}
