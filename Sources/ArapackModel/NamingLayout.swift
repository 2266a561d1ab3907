import ArapackTensor

/// How a file names (and lays out) the family's tensors (ARCHITECTURE.md): the training module's own keys,
/// the release bundle's `model.` + training key, or transformers' stock GPT-2 (`GPT2LMHeadModel`) keys, whose
/// linear weights are `Conv1D`s stored `[in, out]`, the transpose of `nn.Linear`'s `[out, in]`.
public enum NamingLayout: String, Sendable, CaseIterable {
    case training, release, gpt2

    /// GPT-2's names for the per-layer training keys (after `transformer.layers.{i}.` / `transformer.h.{i}.`),
    /// and whether the weight is stored transposed.
    static let gpt2LayerNames: [(training: String, gpt2: String, transposed: Bool)] = [
        (.norm1Weight, "ln_1.weight", false), (.norm1Bias, "ln_1.bias", false),
        (.inProjWeight, "attn.c_attn.weight", true), (.inProjBias, "attn.c_attn.bias", false),
        (.outProjWeight, "attn.c_proj.weight", true), (.outProjBias, "attn.c_proj.bias", false),
        (.norm2Weight, "ln_2.weight", false), (.norm2Bias, "ln_2.bias", false),
        (.linear1Weight, "mlp.c_fc.weight", true), (.linear1Bias, "mlp.c_fc.bias", false),
        (.linear2Weight, "mlp.c_proj.weight", true), (.linear2Bias, "mlp.c_proj.bias", false),
    ].map { (t: ModelFamily.LayerTensor, gpt2: String, transposed: Bool) in (t.rawValue, gpt2, transposed) }
    /// GPT-2's names for the training keys outside the layers.
    static let gpt2TopNames: [(training: String, gpt2: String)] = [
        (ModelFamily.embedding, "transformer.wte.weight"), (ModelFamily.positionEmbedding, "transformer.wpe.weight"),
        (ModelFamily.finalNormWeight, "transformer.ln_f.weight"), (ModelFamily.finalNormBias, "transformer.ln_f.bias"),
        (ModelFamily.lmHead, ModelFamily.lmHead),
    ]
    static let trainingLayerPrefix = ModelFamily.layerPrefix
    static let gpt2LayerPrefix = "transformer.h."

    /// The layout a set of stored names is in: release when every name has the `model.` prefix, GPT-2 when
    /// GPT-2's token embedding is among them, training otherwise.
    public static func detect(_ names: [String]) -> NamingLayout {
        if !names.isEmpty && names.allSatisfy({ $0.hasPrefix(ModelFamily.releasePrefix) }) { return .release }
        if names.contains(gpt2TopNames[0].gpt2) { return .gpt2 }
        return .training
    }

    /// The stored name of a training key in this layout.
    public func name(of training: String) -> String {
        switch self {
        case .training: return training
        case .release: return ModelFamily.releasePrefix + training
        case .gpt2:
            if let top = Self.gpt2TopNames.first(where: { $0.training == training }) { return top.gpt2 }
            guard let (layer, rest) = Self.split(training, prefix: Self.trainingLayerPrefix),
                  let entry = Self.gpt2LayerNames.first(where: { $0.training == rest }) else { return training }
            return Self.gpt2LayerPrefix + layer + "." + entry.gpt2
        }
    }

    /// The training key a stored name stands for, or nil when the name is not one of this layout's.
    /// (Training names are returned as they are; wrappers are removed by `ModelFamily.normalize`.)
    public func training(of stored: String) -> String? {
        switch self {
        case .training: return stored
        case .release: return stored.hasPrefix(ModelFamily.releasePrefix) ? String(stored.dropFirst(ModelFamily.releasePrefix.count)) : nil
        case .gpt2:
            if let top = Self.gpt2TopNames.first(where: { $0.gpt2 == stored }) { return top.training }
            guard let (layer, rest) = Self.split(stored, prefix: Self.gpt2LayerPrefix),
                  let entry = Self.gpt2LayerNames.first(where: { $0.gpt2 == rest }) else { return nil }
            return Self.trainingLayerPrefix + layer + "." + entry.training
        }
    }

    /// Whether this layout stores the training tensor transposed (GPT-2's Conv1D weights).
    public func isTransposed(_ training: String) -> Bool {
        guard self == .gpt2, let (_, rest) = Self.split(training, prefix: Self.trainingLayerPrefix) else { return false }
        return Self.gpt2LayerNames.contains { $0.training == rest && $0.transposed }
    }

    /// The stored shape of a training tensor of shape `shape`.
    public func storedShape(of training: String, _ shape: [Int]) -> [Int] {
        isTransposed(training) ? shape.reversed() : shape
    }

    /// `"12.rest"` after `prefix` → ("12", "rest"), for a decimal layer index without leading zeros.
    private static func split(_ name: String, prefix: String) -> (String, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let tail = name.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: ".") else { return nil }
        let layer = tail[..<dot]
        guard !layer.isEmpty, layer.allSatisfy(\.isASCII), layer.allSatisfy(\.isNumber), layer == "0" || !layer.hasPrefix("0") else { return nil }
        return (String(layer), String(tail[tail.index(after: dot)...]))
    }
}
