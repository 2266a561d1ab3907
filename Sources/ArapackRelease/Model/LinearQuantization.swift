import ArapackFormats
import ArapackModel
import ArapackTensor
import Dispatch
import CKernels

/// Symmetric integer quantization of the weights of the layers' nn.Linear modules (`ModelFamily.isLinearModuleWeight`:
/// what compressed-tensors can load) in compressed-tensors' layouts (docs/bundle.md). A weight `X` [rows, cols] gets
/// one float32 scale per output row ([rows, 1]) or, with a group size G, per G columns ([rows, cols/G]); all in
/// float32, q = clamp(round-half-even(x / scale)) as `torch.round((w / scale).clamp(low, high))` computes it:
/// - int8 ("int-quantized"): `X` I8 in [-127, 127] and `X_scale` F32; scale = max|x| / 127 (1 for a zero group).
/// - int4 ("pack-quantized", W4A16): `X_packed` I32 [rows, cols/8], `X_scale` F32 and `X_shape` I64 [rows, cols];
///   q in [-8, 7] stored as q + 8 in 4 bits, element i of a row at bits 4i of the row's words (little-endian);
///   scale = max|x| / 7.5 (float32's epsilon for a zero group), as compressed-tensors' `calculate_qparams` computes it.
public struct LinearQuantization: Equatable, Sendable {
    public enum Scheme: String, CaseIterable, Sendable {
        case int8, int4

        /// The parity limits of a bundle quantized so.
        public var parityThresholds: ParityThresholds { self == .int8 ? .int8 : .int4 }
    }
    public var scheme: Scheme
    /// 0: one scale per row; otherwise one per `groupSize` columns (which must divide the row).
    public var groupSize: Int

    public init(_ scheme: Scheme = .int8, groupSize: Int = 0) {
        self.scheme = scheme
        self.groupSize = groupSize
    }

    /// int4's group size unless `--int4-group-size` says otherwise (what W4A16 checkpoints use).
    public static let int4GroupSize = 128

    /// What a quantized weight's tensors add to the weight's name (docs/bundle.md).
    public static let scaleSuffix = ModelFamily.QuantizedParts.scaleSuffix
    public static let packedSuffix = ModelFamily.QuantizedParts.packedSuffix
    public static let shapeSuffix = ModelFamily.QuantizedParts.shapeSuffix

    /// compressed-tensors' name for the layout (its `format`).
    public var format: String { scheme == .int8 ? "int-quantized" : "pack-quantized" }
    public var bits: Int { scheme == .int8 ? 8 : 4 }
    /// The quantized values' range.
    var low: Float { scheme == .int8 ? -127 : -8 }
    var high: Float { scheme == .int8 ? 127 : 7 }
    /// Values per stored element of the weight: 1 byte each (int8), 8 per int32 word (int4).
    static let int4PerWord = 8

    /// The name of the flag that sets the group size.
    public var groupSizeFlag: String { "--\(scheme.rawValue)-group-size" }

    /// Columns per scale for a row of `cols`.
    func group(_ cols: Int) -> Int { groupSize == 0 ? cols : groupSize }

    /// The scale tensor's shape for a weight of `shape`, or an error when the group size does not divide it (or,
    /// for int4, the row does not fill whole int32 words).
    public func scaleShape(_ shape: [Int], name: String) throws -> [Int] {
        guard shape.count == 2 else { throw CastError.quantizedNotMatrix(tensor: name, scheme: scheme.rawValue) }
        guard shape[1] % group(shape[1]) == 0 else {
            throw CastError.quantizedGroupSize(tensor: name, flag: groupSizeFlag, groupSize: groupSize, columns: shape[1])
        }
        if scheme == .int4 && shape[1] % Self.int4PerWord != 0 {
            throw CastError.int4Columns(tensor: name, columns: shape[1])
        }
        return [shape[0], shape[1] / group(shape[1])]
    }

    /// The scale of a group whose largest magnitude is `top`.
    func scale(forMax top: Float) -> Float {
        switch scheme {
        case .int8: return top > 0 ? top / 127 : 1
        case .int4:
            let s = top / 7.5
            return s == 0 ? Float.ulpOfOne : s
        }
    }

    /// The float32 scales of a float32 weight (row-major [rows, groups]).
    public func scales(of values: UnsafeBufferPointer<Float>, rows: Int, cols: Int) -> [Float] {
        let g = group(cols)
        var out = [Float](repeating: 1, count: rows * (cols / g))
        for r in 0..<rows {
            for k in 0..<(cols / g) {
                out[r * (cols / g) + k] = scale(forMax: arapack_max_abs(values.baseAddress! + r * cols + k * g, g))
            }
        }
        return out
    }

    /// Quantizes rows `rows` of a weight whose values start at row `rows.lowerBound`, into `q` (one value a byte);
    /// adds the error of q·scale against the values to `error`.
    public func quantize(_ values: UnsafeBufferPointer<Float>, rows: Range<Int>, cols: Int, scales: [Float],
                         into q: UnsafeMutableBufferPointer<Int8>, error: inout QuantizationRecord.Accumulator) {
        let g = group(cols), groups = cols / g
        for (i, r) in rows.enumerated() {
            for k in 0..<groups {
                let start = i * cols + k * g
                error.withStats { arapack_quantize_symmetric(values.baseAddress! + start, g, scales[r * groups + k], low, high, q.baseAddress! + start, $0) }
            }
        }
    }

    /// int4's words of quantized values `q` (a whole number of rows of `cols`): eight values a word, each + 8 in
    /// 4 bits, the first in the lowest bits; written little-endian as compressed-tensors' `pack_to_int32` stores them.
    static func packInt4(_ q: UnsafeMutableBufferPointer<Int8>, into words: UnsafeMutableBufferPointer<UInt32>) {
        for w in 0..<(q.count / int4PerWord) {
            var word: UInt32 = 0
            for k in 0..<int4PerWord { word |= UInt32(UInt8(bitPattern: q[w * int4PerWord + k] &+ 8) & 0xF) << (4 * k) }
            words[w] = word.littleEndian
        }
    }

    /// The float32 tensor `q · scale` of a quantized weight: `stored` is `X` (I8) with its scale, or `X_packed` (I32)
    /// with its scale and `X_shape`, which must state the unpacked shape.
    public static func dequantize(_ stored: Tensor, scale: Tensor, shape: Tensor?, name: String) throws -> Tensor {
        let decoder = try rowDecoder(stored, scale: scale, shape: shape, name: name)
        return try decoder.decodeAll(shape: [decoder.rows, decoder.cols])
    }

    /// A quantized weight (as `dequantize` takes it) decoded a run of rows at a time, each value `q · scale` as
    /// `dequantize` computes it: the forward pass reads int8 and int4 bundles this way, with no float32 copy.
    public static func rowDecoder(_ stored: Tensor, scale: Tensor, shape: Tensor?, name: String) throws -> RowDecoder {
        let (rows, cols, groups) = try checkParts(stored, scale: scale, shape: shape, name: name)
        let packed = stored.dtype == .i32, g = cols / groups
        let s = try scale.floats()
        return RowDecoder(rows: rows, cols: cols, storage: stored.storage) { first, count, out in
            stored.withUnsafeBytes { raw in
                s.withUnsafeBufferPointer { s in
                    let bytes = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    for r in first..<(first + count) {
                        let row = out + (r - first) * cols
                        // One scale per group of g columns; each value is q (exact as a float) times its scale.
                        for group in 0..<groups {
                            let scale = s[r * groups + group]
                            if packed {
                                for c in (group * g)..<(group * g + g) {
                                    let byte = bytes[r * cols / 2 + c / 2]
                                    row[c] = Float(Int(c % 2 == 0 ? byte & 0xF : byte >> 4) - 8) * scale
                                }
                            } else {
                                // A loop of its own, which the compiler vectorises.
                                let values = UnsafeRawPointer(bytes + r * cols).assumingMemoryBound(to: Int8.self)
                                for c in (group * g)..<(group * g + g) { row[c] = Float(values[c]) * scale }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The rows, columns and scale groups of a quantized weight whose tensors fit together (`dequantize`), or the error
    /// that names what does not.
    public static func checkParts(_ stored: Tensor, scale: Tensor, shape: Tensor?, name: String) throws -> (rows: Int, cols: Int, groups: Int) {
        let packed = stored.dtype == .i32
        let perElement = packed ? int4PerWord : 1
        guard stored.dtype == .i8 || packed, stored.shape.count == 2, scale.dtype == .f32, scale.shape.count == 2,
              scale.shape[0] == stored.shape[0], scale.shape[1] > 0, (stored.shape[1] * perElement) % scale.shape[1] == 0 else {
            throw CastError.quantizedParts(tensor: name, weightDType: stored.dtype, weightShape: stored.shape, scaleDType: scale.dtype, scaleShape: scale.shape)
        }
        let rows = stored.shape[0], cols = stored.shape[1] * perElement, groups = scale.shape[1]
        if packed {
            let stated = try shape.map { t -> [Int] in
                guard (t.dtype == .i64 || t.dtype == .i32), t.shape == [2] else { return [] }
                return t.dtype == .i64 ? try t.integers(as: Int64.self).map(Int.init) : try t.integers(as: Int32.self).map(Int.init)
            }
            guard stated == [rows, cols] else {
                throw CastError.int4Shape(tensor: name, stated: shape.map { "\($0.dtype.name) \($0.shape)" + (stated.map { $0.isEmpty ? "" : " = \($0)" } ?? "") },
                                          expected: [rows, cols])
            }
        }
        return (rows, cols, groups)
    }

    /// The quantization of a weight stored as `stored` (I8 values or I32 words) with a scale of `scale`: the scheme by
    /// the stored dtype, the group size by the scale's shape (one scale a row reads as per channel).
    public static func of(stored: TensorDescriptor, scale: TensorDescriptor) -> LinearQuantization {
        let scheme: Scheme = stored.dtype == .i32 ? .int4 : .int8
        let cols = (stored.shape.last ?? 0) * (scheme == .int4 ? int4PerWord : 1)
        let groups = scale.shape.last ?? 1
        return LinearQuantization(scheme, groupSize: groups <= 1 ? 0 : cols / groups)
    }

    /// How the report names the method.
    public var method: String {
        "\(scheme.rawValue) symmetric, " + (groupSize == 0 ? "per channel" : "groups of \(groupSize)") + ", for the nn.Linear weights; the tied embedding and "
            + "\(ModelFamily.LayerTensor.inProjWeight.rawValue.split(separator: ".").last!) cast to bfloat16"
    }

    /// config.json's `quantization_config` (compressed-tensors): nn.Linear modules targeted, the format stated in the
    /// group (where compressed-tensors reads it), `ignored` modules (the LM head, --keep) left out.
    public func configJSON(ignored: [String]) -> JSONValue {
        .object([
            .init("quant_method", .string("compressed-tensors")),
            .init("format", .string(format)),
            .init("quantization_status", .string("compressed")),
            .init("config_groups", .object([.init("group_0", .object([
                .init("targets", .array([.string("Linear")])),
                .init("format", .string(format)),
                .init("weights", .object([
                    .init("num_bits", .int(bits)), .init("type", .string("int")), .init("symmetric", .bool(true)),
                    .init("strategy", .string(groupSize == 0 ? "channel" : "group")),
                    .init("group_size", groupSize == 0 ? .null : .int(groupSize)), .init("dynamic", .bool(false)),
                ])),
                .init("input_activations", .null),
            ]))])),
            .init("ignore", .array(ignored.map { .string($0) })),
        ])
    }
}

extension LinearQuantization {
    /// What keeps transformers + compressed-tensors from loading a quantized bundle as its `quantization_config`
    /// declares: each config group states the format of the stored weights and targets nn.Linear only; the tied LM
    /// head is ignored; the quantized weights are exactly the weights of the Linear modules not ignored. `stored`
    /// maps the bundle's tensor names (release names) to their dtype.
    static func loadProblems(_ q: JSONValue, stored: [String: DType], tied: Bool) -> [String] {
        var problems: [String] = []
        let packed = stored.keys.contains { $0.hasSuffix(packedSuffix) }
        let format = LinearQuantization(packed ? .int4 : .int8).format
        let groups = q["config_groups"]?.members ?? []
        if groups.isEmpty { problems.append("quantization_config has no config_groups") }
        for g in groups {
            if g.value["format"]?.stringValue != format {
                problems.append("quantization_config group \(g.key) states no format \"\(format)\" (compressed-tensors reads it from the group)")
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
        for (name, dtype) in stored.sorted(by: { $0.key < $1.key }) where !name.hasSuffix(scaleSuffix) && !name.hasSuffix(shapeSuffix) {
            let weight = name.hasSuffix(packedSuffix) ? String(name.dropLast(packedSuffix.count)) : name
            guard let training = NamingLayout.release.training(of: weight) else { continue }
            let scheme = dtype == .i8 ? "int8" : name.hasSuffix(packedSuffix) ? "int4" : nil
            if packed && dtype == .i8 { problems.append("\(name) is int8 beside int4 weights: compressed-tensors loads one format per config group") }
            let linear = ModelFamily.isLinearModuleWeight(training)
            let ignoredHere = ignored.contains(ModelFamily.module(of: weight))
            let quantized = scheme != nil
            if let scheme, !linear {
                problems.append("\(name) is \(scheme) but is not the weight of an nn.Linear module; compressed-tensors cannot load it quantized")
            } else if let scheme, ignoredHere {
                problems.append("\(name) is \(scheme) but quantization_config ignores its module")
            } else if linear && !ignoredHere && !quantized {
                problems.append("\(name) is \(dtype.name) but quantization_config quantizes its module (ignore it, or store it quantized with a scale)")
            }
        }
        return problems
    }
}
