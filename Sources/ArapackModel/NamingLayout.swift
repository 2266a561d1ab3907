import ArapackFormats
import ArapackTensor

/// How a file names (and lays out) the family's tensors (docs/model-family.md): the training module's own keys,
/// the release bundle's `model.` + training key, transformers' stock GPT-2 (`GPT2LMHeadModel`) keys, whose
/// linear weights are `Conv1D`s stored `[in, out]`, the transpose of `nn.Linear`'s `[out, in]`, or llama.cpp's
/// GGUF names for its `gpt2` architecture (docs/model-family.md, "The GGUF form"; stored as `nn.Linear` stores them).
public enum NamingLayout: String, Sendable, CaseIterable {
    case training, release, gpt2, gguf

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
    /// llama.cpp's names (gguf-py's `MODEL_TENSOR` names for `gpt2`): q, k, v fused as in `in_proj`.
    static let ggufLayerNames: [(training: String, gguf: String)] = [
        (.norm1Weight, "attn_norm.weight"), (.norm1Bias, "attn_norm.bias"),
        (.inProjWeight, "attn_qkv.weight"), (.inProjBias, "attn_qkv.bias"),
        (.outProjWeight, "attn_output.weight"), (.outProjBias, "attn_output.bias"),
        (.norm2Weight, "ffn_norm.weight"), (.norm2Bias, "ffn_norm.bias"),
        (.linear1Weight, "ffn_up.weight"), (.linear1Bias, "ffn_up.bias"),
        (.linear2Weight, "ffn_down.weight"), (.linear2Bias, "ffn_down.bias"),
    ].map { (t: ModelFamily.LayerTensor, gguf: String) in (t.rawValue, gguf) }
    static let ggufTopNames: [(training: String, gguf: String)] = [
        (ModelFamily.embedding, "token_embd.weight"), (ModelFamily.positionEmbedding, "position_embd.weight"),
        (ModelFamily.finalNormWeight, "output_norm.weight"), (ModelFamily.finalNormBias, "output_norm.bias"),
        (ModelFamily.lmHead, "output.weight"),
    ]
    static let ggufLayerPrefix = "blk."

    /// The layout a set of stored names is in: release when every name has the `model.` prefix, GPT-2 when
    /// GPT-2's token embedding is among them, training otherwise.
    public static func detect(_ names: [String]) -> NamingLayout {
        if !names.isEmpty && names.allSatisfy({ $0.hasPrefix(ModelFamily.releasePrefix) }) { return .release }
        if names.contains(gpt2TopNames[0].gpt2) { return .gpt2 }
        if names.contains(ggufTopNames[0].gguf) { return .gguf }
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
        case .gguf:
            if let top = Self.ggufTopNames.first(where: { $0.training == training }) { return top.gguf }
            guard let (layer, rest) = Self.split(training, prefix: Self.trainingLayerPrefix),
                  let entry = Self.ggufLayerNames.first(where: { $0.training == rest }) else { return training }
            return Self.ggufLayerPrefix + layer + "." + entry.gguf
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
        case .gguf:
            if let top = Self.ggufTopNames.first(where: { $0.gguf == stored }) { return top.training }
            guard let (layer, rest) = Self.split(stored, prefix: Self.ggufLayerPrefix),
                  let entry = Self.ggufLayerNames.first(where: { $0.gguf == rest }) else { return nil }
            return Self.trainingLayerPrefix + layer + "." + entry.training
        }
    }

    /// The training name a stored tensor stands for: wrappers removed from training-layout names, a name this layout
    /// does not know kept as it is (the family's shape check then reports it). The one stored → training mapping of
    /// every reader (a source opened for conversion, a bundle under verify).
    public func trainingName(of stored: String) -> String {
        self == .training ? ModelFamily.normalize(stored) : training(of: stored) ?? stored
    }

    /// A stored tensor's descriptor as the training module holds it (GPT-2's transposed weights turned back).
    public func trainingDescriptor(of training: String, _ stored: TensorDescriptor) -> TensorDescriptor {
        var d = stored
        if isTransposed(training), d.shape.count == 2 { d.shape.reverse() }
        return d
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
