import ArapackFormats
import ArapackModel
import ArapackTensor
import CKernels

/// Symmetric int8 weight quantization in the compressed-tensors convention (docs/bundle.md): the weight of each
/// nn.Linear module of the layers (`ModelFamily.isLinearModuleWeight`: what compressed-tensors can load)
/// `X` [rows, cols] becomes `X` (I8 in [-127, 127]) and `X_scale` (F32): per output channel ([rows, 1]) or,
/// with a group size G, per group of G columns ([rows, cols/G]). For each row (or group):
/// scale = max|x| / 127 (1 when the row is all zeros), q = clamp(round-half-even(x / scale), -127, 127),
/// all in float32, which is what `torch.round(w / scale).clamp(-127, 127)` computes.
public struct Int8Quantization: Sendable {
    /// 0: one scale per row; otherwise one per `groupSize` columns (which must divide the row).
    public var groupSize: Int
    public init(groupSize: Int = 0) { self.groupSize = groupSize }

    /// Columns per scale for a row of `cols`.
    func group(_ cols: Int) -> Int { groupSize == 0 ? cols : groupSize }

    /// The scale tensor's shape for a weight of `shape`, or an error when the group size does not divide it.
    public func scaleShape(_ shape: [Int], name: String) throws -> [Int] {
        guard shape.count == 2 else { throw CastError.int8NotMatrix(tensor: name) }
        guard shape[1] % group(shape[1]) == 0 else {
            throw CastError.int8GroupSize(tensor: name, groupSize: groupSize, columns: shape[1])
        }
        return [shape[0], shape[1] / group(shape[1])]
    }

    /// The float32 scales of a float32 weight (row-major [rows, groups]).
    public func scales(of values: UnsafeBufferPointer<Float>, rows: Int, cols: Int) -> [Float] {
        let g = group(cols)
        var out = [Float](repeating: 1, count: rows * (cols / g))
        for r in 0..<rows {
            for k in 0..<(cols / g) {
                let top = arapack_max_abs(values.baseAddress! + r * cols + k * g, g)
                out[r * (cols / g) + k] = top > 0 ? top / 127 : 1
            }
        }
        return out
    }

    /// Quantizes rows `rows` of a weight whose values start at row `rows.lowerBound`, into `q`; adds the
    /// error of q·scale against the values to `error`.
    public func quantize(_ values: UnsafeBufferPointer<Float>, rows: Range<Int>, cols: Int, scales: [Float],
                         into q: UnsafeMutableBufferPointer<Int8>, error: inout QuantizationRecord.Accumulator) {
        let g = group(cols), groups = cols / g
        for (i, r) in rows.enumerated() {
            for k in 0..<groups {
                let start = i * cols + k * g
                error.withStats { arapack_quantize_int8(values.baseAddress! + start, g, scales[r * groups + k], q.baseAddress! + start, $0) }
            }
        }
    }

    /// The float32 tensor `q · scale` of a quantized weight.
    public static func dequantize(_ q: Tensor, scale: Tensor, name: String) throws -> Tensor {
        guard q.dtype == .i8, q.shape.count == 2, scale.dtype == .f32, scale.shape.count == 2, scale.shape[0] == q.shape[0],
              scale.shape[1] > 0, q.shape[1] % scale.shape[1] == 0 else {
            throw CastError.int8Pair(tensor: name, weightDType: q.dtype, weightShape: q.shape, scaleDType: scale.dtype, scaleShape: scale.shape)
        }
        let rows = q.shape[0], cols = q.shape[1], groups = scale.shape[1], g = cols / groups
        let s = try scale.floats()
        var values = [Float](repeating: 0, count: rows * cols)
        q.withUnsafeBytes { raw in
            for r in 0..<rows {
                for c in 0..<cols {
                    values[r * cols + c] = Float(Int8(bitPattern: raw[r * cols + c])) * s[r * groups + c / g]
                }
            }
        }
        return try Tensor(float32: values, shape: q.shape)
    }

    /// config.json's `quantization_config` (compressed-tensors, int-quantized): nn.Linear modules targeted, the
    /// format stated in the group (where compressed-tensors reads it), `ignored` modules (the LM head, --keep) left out.
    public func configJSON(ignored: [String]) -> JSONValue {
        .object([
            .init("quant_method", .string("compressed-tensors")),
            .init("format", .string("int-quantized")),
            .init("quantization_status", .string("compressed")),
            .init("config_groups", .object([.init("group_0", .object([
                .init("targets", .array([.string("Linear")])),
                .init("format", .string("int-quantized")),
                .init("weights", .object([
                    .init("num_bits", .int(8)), .init("type", .string("int")), .init("symmetric", .bool(true)),
                    .init("strategy", .string(groupSize == 0 ? "channel" : "group")),
                    .init("group_size", groupSize == 0 ? .null : .int(groupSize)), .init("dynamic", .bool(false)),
                ])),
                .init("input_activations", .null),
            ]))])),
            .init("ignore", .array(ignored.map { .string($0) })),
        ])
    }
}

extension Int8Quantization {
    /// What keeps transformers + compressed-tensors from loading an int8 bundle as its `quantization_config`
    /// declares: each config group states its format and targets nn.Linear only; the tied LM head is ignored;
    /// the I8 tensors are exactly the weights of the Linear modules not ignored. `stored` maps the bundle's
    /// tensor names (release names) to their dtype.
    static func loadProblems(_ q: JSONValue, stored: [String: DType], tied: Bool) -> [String] {
        var problems: [String] = []
        let groups = q["config_groups"]?.members ?? []
        if groups.isEmpty { problems.append("quantization_config has no config_groups") }
        for g in groups {
            if g.value["format"]?.stringValue != "int-quantized" {
                problems.append("quantization_config group \(g.key) states no format \"int-quantized\" (compressed-tensors reads it from the group)")
            }
            if g.value["targets"] != .array([.string("Linear")]) {
                problems.append("quantization_config group \(g.key) targets \(g.value["targets"]?.serialized().prefix(80) ?? "nothing"), not [\"Linear\"]: compressed-tensors cannot load other modules of this model quantized")
            }
        }
        let ignored = Set((q["ignore"]?.elements ?? []).compactMap(\.stringValue))
        let head = NamingLayout.release.name(of: ModelFamily.module(of: ModelFamily.lmHead))
        if tied && !ignored.contains(head) {
            problems.append("quantization_config does not ignore \(head): the tied head would be quantized through the embedding (NaN logits)")
        }
        for (name, dtype) in stored.sorted(by: { $0.key < $1.key }) where !name.hasSuffix(ModelFamily.int8ScaleSuffix) {
            guard let training = NamingLayout.release.training(of: name) else { continue }
            let linear = ModelFamily.isLinearModuleWeight(training)
            let ignoredHere = ignored.contains(ModelFamily.module(of: name))
            if dtype == .i8 && !linear {
                problems.append("\(name) is I8 but is not the weight of an nn.Linear module; compressed-tensors cannot load it quantized")
            } else if dtype == .i8 && ignoredHere {
                problems.append("\(name) is I8 but quantization_config ignores its module")
            } else if linear && !ignoredHere && dtype != .i8 {
                problems.append("\(name) is \(dtype.name) but quantization_config quantizes its module (ignore it, or store it as I8 with a scale)")
            }
        }
        return problems
    }
}

/// What quantization (or a cast) did to one tensor.
public struct QuantizationRecord: Codable, Equatable, Sendable {
    public var name: String
    public var maxAbsError: Double
    /// 10·log10(Σx² / Σ(x − x̂)²); infinite when exact.
    public var snrDB: Double
    public var bytesBefore: Int
    public var bytesAfter: Int

    /// Accumulates the error of `approx` against `exact` (in double; the loops are CKernels').
    public struct Accumulator {
        /// Σx², Σ(x − x̂)², max |x − x̂|.
        private var stats: [Double] = [0, 0, 0]

        mutating func withStats(_ body: (UnsafeMutablePointer<Double>) -> Void) {
            stats.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        }

        /// Adds whole buffers.
        mutating func add(_ exact: UnsafeBufferPointer<Float>, _ approx: UnsafeBufferPointer<Float>) {
            withStats { arapack_error_stats(exact.baseAddress!, approx.baseAddress!, exact.count, $0) }
        }

        public func record(_ name: String, before: Int, after: Int) -> QuantizationRecord {
            QuantizationRecord(name: name, maxAbsError: stats[2], snrDB: stats[1] == 0 ? .infinity : 10 * log10(stats[0] / stats[1]),
                               bytesBefore: before, bytesAfter: after)
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, maxAbsError = "max_abs_error", snrDB = "snr_db", bytesBefore = "bytes_before", bytesAfter = "bytes_after"
    }

    /// The SNR as written: two decimals, or the string "inf" for an exact tensor.
    var snrJSON: JSONValue { snrDB.isFinite ? .double((snrDB * 100).rounded() / 100) : .string("inf") }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(maxAbsError, forKey: .maxAbsError)
        try c.encode(snrJSON, forKey: .snrDB)
        try c.encode(bytesBefore, forKey: .bytesBefore)
        try c.encode(bytesAfter, forKey: .bytesAfter)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        maxAbsError = try c.decode(Double.self, forKey: .maxAbsError)
        if let v = try? c.decode(Double.self, forKey: .snrDB) {
            snrDB = v
        } else {
            snrDB = try c.decode(String.self, forKey: .snrDB) == "inf" ? .infinity : .nan
        }
        bytesBefore = try c.decode(Int.self, forKey: .bytesBefore)
        bytesAfter = try c.decode(Int.self, forKey: .bytesAfter)
    }

    init(name: String, maxAbsError: Double, snrDB: Double, bytesBefore: Int, bytesAfter: Int) {
        (self.name, self.maxAbsError, self.snrDB, self.bytesBefore, self.bytesAfter) = (name, maxAbsError, snrDB, bytesBefore, bytesAfter)
    }

    /// The cells of the report's table (max |error|, SNR dB, bytes before, bytes after), as the card and convert print them.
    public var cells: [String] {
        [JSONValue.double(maxAbsError).serialized(), snrDB.isFinite ? snrJSON.serialized() : "inf", String(bytesBefore), String(bytesAfter)]
    }
}

/// The per-tensor report of a narrowed or quantized bundle (docs/bundle.md): in manifest.json, the model card and
/// convert's table, read from this one type.
public struct QuantizationReport: Codable, Equatable, Sendable {
    /// How the weights were narrowed or quantized, in words.
    public var method: String
    /// Every narrowed tensor, by name.
    public var tensors: [QuantizationRecord]
}

#if canImport(Glibc)
import Glibc
#endif
