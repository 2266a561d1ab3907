import ArapackFormats
import ArapackModel
import ArapackTensor

/// What `convert --to gguf --dtype NAME` writes (docs/model-family.md, "The GGUF form"): one tensor type for every
/// matrix (f32, bf16, f16, q8_0, and the single-type files `llama-quantize --pure` makes: q4_0, q5_0, q4_k, q5_k,
/// q6_k), or one of llama-quantize's mixes (q4_k_m, q5_k_m), which give some matrices more bits. Either way each
/// tensor's type is the one llama.cpp's `llama_model_quantize` gives it from the float32 file, fallbacks included, so
/// the file holds the same tensors as llama.cpp's own two-step path.
public struct GGUFScheme: Sendable, Equatable {
    /// The `--dtype` name (llama-quantize's file type, lower case).
    public let name: String
    /// The type of the matrices (before the mix and the fallbacks).
    public let base: GGUF.TensorType
    /// `general.file_type` (llama.cpp's `llama_ftype`).
    public let fileType: UInt32
    /// Whether it is a mix (llama.cpp's choice per tensor), not one type (`--pure`).
    public let mix: Bool

    public static let all: [GGUFScheme] = [
        GGUFScheme(name: "f32", base: .f32, fileType: 0, mix: false),
        GGUFScheme(name: "bf16", base: .bf16, fileType: 32, mix: false),
        GGUFScheme(name: "f16", base: .f16, fileType: 1, mix: false),
        GGUFScheme(name: "q8_0", base: .q8_0, fileType: 7, mix: false),
        GGUFScheme(name: "q6_k", base: .q6_K, fileType: 18, mix: false),
        GGUFScheme(name: "q5_k_m", base: .q5_K, fileType: 17, mix: true),
        GGUFScheme(name: "q5_k", base: .q5_K, fileType: 17, mix: false),
        GGUFScheme(name: "q5_0", base: .q5_0, fileType: 8, mix: false),
        GGUFScheme(name: "q4_k_m", base: .q4_K, fileType: 15, mix: true),
        GGUFScheme(name: "q4_k", base: .q4_K, fileType: 15, mix: false),
        GGUFScheme(name: "q4_0", base: .q4_0, fileType: 2, mix: false),
    ]

    public static func named(_ name: String) -> GGUFScheme? { all.first { $0.name == name } }

    /// The scheme that stores `dtype` unchanged (the default: the source's floating dtype; float32 for others).
    static func keeping(_ dtype: DType) -> GGUFScheme { all.first { !$0.quantizes && $0.base.dtype == dtype } ?? named("f32")! }

    /// Whether the matrices are stored in blocks (a quantization, and `general.quantization_version` 2).
    public var quantizes: Bool { base.isBlock }

    /// The type llama.cpp gives the tensor of training name `training` and shape `shape` ([rows, columns]) in a model
    /// of `layers` layers, tied or not:
    /// - vectors and the position table stay float32 (llama.cpp quantizes neither);
    /// - in a mix, the LM head (and the tied embedding, which is the LM head) gets Q6_K, or Q8_0 when its rows are not
    ///   whole super-blocks; the attention input projection (attn_qkv) and the FFN output (ffn_down) of the layers
    ///   `usesMoreBits` picks get Q6_K;
    /// - a row that is not whole blocks of the type falls back as llama.cpp's `tensor_type_fallback` does (Q4_K → Q5_0,
    ///   Q5_K → Q5_1, Q6_K → Q8_0), then to F16 when even that does not fit (where llama.cpp gives up on Q4_0, Q5_0
    ///   and Q8_0, arapack writes F16, as llama.cpp's own converter does for Q8_0).
    public func type(of training: String, shape: [Int], layers: Int, tied: Bool) -> GGUF.TensorType {
        guard shape.count == 2, training != ModelFamily.positionEmbedding else { return .f32 }
        guard quantizes else { return base }
        let columns = shape[1]
        var type = base
        if mix {
            let layerTensor = ModelFamily.layerTensor(training)
            if training == ModelFamily.lmHead || (tied && training == ModelFamily.embedding) {
                type = columns % base.blockElements != 0 ? .q8_0 : .q6_K
            } else if let (layer, tensor) = layerTensor, tensor == .inProjWeight || tensor == .linear2Weight,
                      Self.usesMoreBits(layer: layer, of: layers) {
                type = .q6_K
            }
        }
        if columns % type.blockElements != 0 {
            switch type {
            case .q4_K: type = .q5_0
            case .q5_K: type = .q5_1
            case .q6_K: type = .q8_0
            default: break
            }
        }
        return columns % type.blockElements == 0 ? type : .f16
    }

    /// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and every third one between.
    public static func usesMoreBits(layer i: Int, of n: Int) -> Bool {
        i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
    }

    /// The scheme a file was written in, from its file type and its tensors' types (a pure file and a mix share a
    /// file type); nil when no scheme gives every tensor the type it has.
    static func of(_ file: GGUFFile, config: ModelConfig, tied: Bool) -> GGUFScheme? {
        guard let fileType = file["general.file_type"]?.intValue else { return nil }
        return all.first { scheme in
            scheme.fileType == fileType && ModelFamily.expectedShapes(config).allSatisfy { training, shape in
                if training == ModelFamily.lmHead && tied { return true }
                return (try? file.entry(named: NamingLayout.gguf.name(of: training)).type) == scheme.type(of: training, shape: shape, layers: config.layers, tied: tied)
            }
        }
    }
}

extension ParityThresholds {
    /// The limits of a quantized GGUF file by its scheme's bits.
    static func gguf(_ scheme: GGUFScheme) -> ParityThresholds {
        switch scheme.base {
        case .q6_K: return .q6_k
        case .q5_0, .q5_1, .q5_K: return .q5
        case .q4_0, .q4_K: return .q4
        default: return .q8_0
        }
    }
}
