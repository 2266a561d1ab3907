import ArapackFormats
import ArapackTensor

/// The AraFusion model family (docs/model-family.md): its tensor names and how a config maps to shapes.
public enum ModelFamily {
    /// Wrapper module names training adds in front of (or inside) every key.
    static let leadingWrappers = ["module.", "_orig_mod."]
    static let wrapperComponents = ["_fsdp_wrapped_module", "_checkpoint_wrapped_module"]
    /// The prefix the HF wrapper class adds (release names).
    public static let releasePrefix = "model."
    public static let embedding = "token_embedding.weight"
    public static let positionEmbedding = "position_embedding.weight"
    public static let finalNormWeight = "ln_f.weight"
    public static let finalNormBias = "ln_f.bias"
    public static let lmHead = "lm_head.weight"
    /// Every layer's tensors live under this prefix and the layer's index.
    public static let layerPrefix = "transformer.layers."

    /// The tensors of one encoder layer, by their names under `transformer.layers.{i}.` (the one place that
    /// spells them; NamingLayout maps them to GPT-2's).
    public enum LayerTensor: String, CaseIterable, Sendable {
        case inProjWeight = "self_attn.in_proj_weight", inProjBias = "self_attn.in_proj_bias"
        case outProjWeight = "self_attn.out_proj.weight", outProjBias = "self_attn.out_proj.bias"
        case linear1Weight = "linear1.weight", linear1Bias = "linear1.bias"
        case linear2Weight = "linear2.weight", linear2Bias = "linear2.bias"
        case norm1Weight = "norm1.weight", norm1Bias = "norm1.bias", norm2Weight = "norm2.weight", norm2Bias = "norm2.bias"

        /// The training name of this tensor in layer `i`.
        public func name(layer i: Int) -> String { ModelFamily.layerPrefix + "\(i)." + rawValue }

        /// The shape a config implies.
        public func shape(_ c: ModelConfig) -> [Int] {
            let d = c.hiddenSize, f = c.intermediateSize
            switch self {
            case .inProjWeight: return [3 * d, d]
            case .inProjBias: return [3 * d]
            case .outProjWeight: return [d, d]
            case .linear1Weight: return [f, d]
            case .linear1Bias: return [f]
            case .linear2Weight: return [d, f]
            case .outProjBias, .linear2Bias, .norm1Weight, .norm1Bias, .norm2Weight, .norm2Bias: return [d]
            }
        }

        /// The weights of nn.Linear modules (what int8 and int4 quantize; see `isLinearModuleWeight`).
        public var isLinearModuleWeight: Bool { self == .outProjWeight || self == .linear1Weight || self == .linear2Weight }
    }

    /// A training key without the DDP / torch.compile / FSDP1 / activation-checkpointing wrappers.
    public static func normalize(_ key: String) -> String {
        var k = Substring(key)
        var stripped = true
        while stripped {
            stripped = false
            for w in leadingWrappers where k.hasPrefix(w) {
                k = k.dropFirst(w.count)
                stripped = true
            }
        }
        guard wrapperComponents.contains(where: { k.contains($0) }) else { return String(k) }
        return k.split(separator: ".", omittingEmptySubsequences: false).filter { !wrapperComponents.contains(String($0)) }.joined(separator: ".")
    }

    /// Tensor names and shapes a config implies (training names; `lm_head.weight` included).
    public static func expectedShapes(_ c: ModelConfig) -> [(name: String, shape: [Int])] {
        let d = c.hiddenSize
        var out: [(String, [Int])] = [(embedding, [c.vocabSize, d]), (positionEmbedding, [c.maxPositions, d])]
        for i in 0..<c.layers {
            out += LayerTensor.allCases.map { ($0.name(layer: i), $0.shape(c)) }
        }
        out += [(finalNormWeight, [d]), (finalNormBias, [d]), (lmHead, [c.vocabSize, d])]
        return out
    }

    /// A training name as (layer index, tensor of the layer), or nil for a name outside the layers.
    public static func layerTensor(_ training: String) -> (layer: Int, tensor: LayerTensor)? {
        guard training.hasPrefix(layerPrefix) else { return nil }
        let rest = training.dropFirst(layerPrefix.count)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), let t = LayerTensor(rawValue: String(rest[rest.index(after: dot)...])) else {
            return nil
        }
        return (i, t)
    }

    /// Whether a training name is the weight of an `nn.Linear` module of the layers (out_proj, linear1, linear2):
    /// the weights int8 and int4 quantize. compressed-tensors quantizes modules, so `in_proj_weight` (a bare parameter of
    /// nn.MultiheadAttention) cannot be; nor the tied embedding, whose tie would carry quantized values into the LM head.
    public static func isLinearModuleWeight(_ training: String) -> Bool {
        layerTensor(training)?.tensor.isLinearModuleWeight ?? false
    }

    /// The module a weight belongs to (`….linear1.weight` → `….linear1`), as compressed-tensors' `ignore` names it.
    public static func module(of weight: String) -> String { String(weight.dropLast(".weight".count)) }

    /// What is wrong with a set of tensors (training names) for `config`: missing, unexpected, misshapen or
    /// non-floating tensors, each naming the tensor as `display` spells it. `lm_head.weight` may be absent
    /// when `headOptional` (a tied model).
    public static func tensorProblems(_ config: ModelConfig, _ tensors: [String: TensorDescriptor], headOptional: Bool,
                                      display: (String) -> String) -> [String] {
        var problems: [String] = []
        let expected = expectedShapes(config)
        let missing = expected.filter { tensors[$0.name] == nil && !($0.name == lmHead && headOptional) }.map { display($0.name) }
        if !missing.isEmpty { problems.append("missing \(missing.count) tensor(s) the config implies: \(list(missing))") }
        let names = Set(expected.map(\.name))
        let unexpected = tensors.keys.filter { !names.contains($0) }.map(display).sorted()
        if !unexpected.isEmpty {
            problems.append("\(unexpected.count) tensor(s) are not part of an AraFusion model of this config: \(list(unexpected))")
        }
        for e in expected {
            guard let d = tensors[e.name] else { continue }
            if d.shape != e.shape { problems.append("tensor \"\(display(e.name))\" has shape \(d.shape), the config implies \(e.shape)") }
            if ![.f32, .f16, .bf16, .f64].contains(d.dtype) {
                problems.append("tensor \"\(display(e.name))\" is \(d.dtype.name); model weights must be floating point")
            }
        }
        return problems
    }

    /// The tensors that stand for one quantized weight `X` (docs/bundle.md), by their names: int8's `X` (I8) with
    /// `X_scale`; int4's `X_packed` (I32) with `X_scale` and `X_shape`.
    public struct QuantizedParts: Equatable, Sendable {
        public static let scaleSuffix = "_scale", packedSuffix = "_packed", shapeSuffix = "_shape"
        public var scale: String
        /// int4's packed words and stated shape (nil for int8, whose values are `X` itself).
        public var packed: String?
        public var shape: String?
        public init(scale: String, packed: String? = nil, shape: String? = nil) {
            (self.scale, self.packed, self.shape) = (scale, packed, shape)
        }
        /// Whether `name` is a scale, packed words or a stated shape by its suffix.
        public static func isPart(_ name: String) -> Bool { [scaleSuffix, packedSuffix, shapeSuffix].contains { name.hasSuffix($0) } }
    }

    /// Folds quantized weights (docs/bundle.md) into the one float32 tensor `X` each stands for: `X` (I8 [rows, cols])
    /// with `X_scale` (F32 [rows, groups], groups dividing cols), or `X_packed` (I32 [rows, cols/8]) with `X_scale`
    /// (the same) and `X_shape` (I64 [2]). Returns the descriptors with each folded and, by weight name, its parts.
    public static func foldQuantized(_ tensors: [String: TensorDescriptor]) -> (tensors: [String: TensorDescriptor], parts: [String: QuantizedParts]) {
        var out = tensors
        var parts: [String: QuantizedParts] = [:]
        for (name, scale) in tensors where name.hasSuffix(QuantizedParts.scaleSuffix) {
            let base = String(name.dropLast(QuantizedParts.scaleSuffix.count))
            guard scale.dtype == .f32, scale.shape.count == 2, scale.shape[1] > 0 else { continue }
            if let q = tensors[base], q.dtype == .i8, q.shape.count == 2, scale.shape[0] == q.shape[0], q.shape[1] % scale.shape[1] == 0 {
                out[base]!.dtype = .f32
                out.removeValue(forKey: name)
                parts[base] = QuantizedParts(scale: name)
            } else if tensors[base] == nil, let p = tensors[base + QuantizedParts.packedSuffix], p.dtype == .i32, p.shape.count == 2,
                      scale.shape[0] == p.shape[0], (p.shape[1] * 8) % scale.shape[1] == 0,
                      let s = tensors[base + QuantizedParts.shapeSuffix], s.dtype == .i64 || s.dtype == .i32, s.shape == [2] {
                out[base] = TensorDescriptor(dtype: .f32, shape: [p.shape[0], p.shape[1] * 8])
                for suffix in [QuantizedParts.scaleSuffix, QuantizedParts.packedSuffix, QuantizedParts.shapeSuffix] { out.removeValue(forKey: base + suffix) }
                parts[base] = QuantizedParts(scale: name, packed: base + QuantizedParts.packedSuffix, shape: base + QuantizedParts.shapeSuffix)
            }
        }
        return (out, parts)
    }

    public static func list(_ names: [String]) -> String {
        names.prefix(5).joined(separator: ", ") + (names.count > 5 ? ", … (\(names.count - 5) more)" : "")
    }

    /// Config fields the tensor shapes determine (HF names), or nil where the tensor is absent.
    public static func fieldsFromShapes(_ shapes: [String: [Int]]) -> [ModelConfig.Field: Int] {
        var f: [ModelConfig.Field: Int] = [:]
        if let e = shapes[embedding], e.count == 2 {
            f[.vocabSize] = e[0]
            f[.hiddenSize] = e[1]
        }
        if let p = shapes[positionEmbedding], p.count == 2 { f[.maxPositions] = p[0] }
        if let l = shapes[LayerTensor.linear1Weight.name(layer: 0)], l.count == 2 { f[.intermediateSize] = l[0] }
        let layerIndices = shapes.keys.compactMap { key -> Int? in
            guard key.hasPrefix(layerPrefix) else { return nil }
            return Int(key.dropFirst(layerPrefix.count).prefix { $0 != "." })
        }
        if let top = layerIndices.max() { f[.layers] = top + 1 }
        return f
    }
}
