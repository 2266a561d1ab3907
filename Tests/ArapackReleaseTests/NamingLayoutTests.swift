import ArapackFormats
@testable import ArapackModel
@testable import ArapackRelease
import ArapackTensor
import XCTest

/// The naming layouts of docs/model-family.md: every tensor of a config named in each layout and mapped back,
/// GPT-2's names and transposes as the spec's table spells them, and the transpose itself.
final class NamingLayoutTests: XCTestCase {
    let config = ModelConfig(vocabSize: 100, hiddenSize: 24, layers: 12, heads: 4, intermediateSize: 40, maxPositions: 20,
                             activation: "gelu", layerNormEps: 1e-5, dropout: 0, causal: true, tieWordEmbeddings: true,
                             bos: 1, eos: 2, pad: 5, mask: 62)

    func testEveryTensorRoundTripsThroughEveryLayout() {
        let training = ModelFamily.expectedShapes(config)
        for layout in NamingLayout.allCases {
            let stored = training.map { layout.name(of: $0.name) }
            XCTAssertEqual(Set(stored).count, stored.count, "\(layout): names are distinct")
            for (t, s) in zip(training, stored) { XCTAssertEqual(layout.training(of: s), t.name, "\(layout) \(s)") }
        }
        XCTAssertNil(NamingLayout.gpt2.training(of: "transformer.h.0.attn.bias"), "GPT-2's causal-mask buffer is no model tensor")
        XCTAssertNil(NamingLayout.gpt2.training(of: "transformer.h.01.ln_1.weight"), "no leading zeros")
        XCTAssertNil(NamingLayout.release.training(of: "token_embedding.weight"))
    }

    func testGPT2NamesAndTransposesAreTheSpecsTable() {
        let g = NamingLayout.gpt2
        let table: [(String, String, Bool)] = [
            ("token_embedding.weight", "transformer.wte.weight", false),
            ("position_embedding.weight", "transformer.wpe.weight", false),
            ("transformer.layers.11.norm1.weight", "transformer.h.11.ln_1.weight", false),
            ("transformer.layers.11.norm2.bias", "transformer.h.11.ln_2.bias", false),
            ("transformer.layers.3.self_attn.in_proj_weight", "transformer.h.3.attn.c_attn.weight", true),
            ("transformer.layers.3.self_attn.in_proj_bias", "transformer.h.3.attn.c_attn.bias", false),
            ("transformer.layers.0.self_attn.out_proj.weight", "transformer.h.0.attn.c_proj.weight", true),
            ("transformer.layers.0.self_attn.out_proj.bias", "transformer.h.0.attn.c_proj.bias", false),
            ("transformer.layers.10.linear1.weight", "transformer.h.10.mlp.c_fc.weight", true),
            ("transformer.layers.10.linear1.bias", "transformer.h.10.mlp.c_fc.bias", false),
            ("transformer.layers.1.linear2.weight", "transformer.h.1.mlp.c_proj.weight", true),
            ("transformer.layers.1.linear2.bias", "transformer.h.1.mlp.c_proj.bias", false),
            ("ln_f.weight", "transformer.ln_f.weight", false), ("ln_f.bias", "transformer.ln_f.bias", false),
            ("lm_head.weight", "lm_head.weight", false),
        ]
        for (training, gpt2, transposed) in table {
            XCTAssertEqual(g.name(of: training), gpt2)
            XCTAssertEqual(g.isTransposed(training), transposed, training)
            XCTAssertFalse(NamingLayout.release.isTransposed(training))
        }
        XCTAssertEqual(g.storedShape(of: "transformer.layers.0.linear1.weight", [40, 24]), [24, 40])
        XCTAssertEqual(NamingLayout.release.name(of: "ln_f.bias"), "model.ln_f.bias")
        XCTAssertEqual(NamingLayout.detect(["transformer.wte.weight", "transformer.h.0.ln_1.weight"]), .gpt2)
        XCTAssertEqual(NamingLayout.detect(["model.token_embedding.weight"]), .release)
        XCTAssertEqual(NamingLayout.detect(["module.token_embedding.weight", "model.x"]), .training)
    }

    /// docs/model-family.md, "The GGUF form": llama.cpp's gpt2 names, nothing transposed.
    func testGGUFNamesAreTheSpecsTable() {
        let table: [(String, String)] = [
            ("token_embedding.weight", "token_embd.weight"), ("position_embedding.weight", "position_embd.weight"),
            ("transformer.layers.11.norm1.weight", "blk.11.attn_norm.weight"), ("transformer.layers.11.norm1.bias", "blk.11.attn_norm.bias"),
            ("transformer.layers.2.norm2.weight", "blk.2.ffn_norm.weight"), ("transformer.layers.2.norm2.bias", "blk.2.ffn_norm.bias"),
            ("transformer.layers.3.self_attn.in_proj_weight", "blk.3.attn_qkv.weight"), ("transformer.layers.3.self_attn.in_proj_bias", "blk.3.attn_qkv.bias"),
            ("transformer.layers.0.self_attn.out_proj.weight", "blk.0.attn_output.weight"), ("transformer.layers.0.self_attn.out_proj.bias", "blk.0.attn_output.bias"),
            ("transformer.layers.10.linear1.weight", "blk.10.ffn_up.weight"), ("transformer.layers.10.linear1.bias", "blk.10.ffn_up.bias"),
            ("transformer.layers.1.linear2.weight", "blk.1.ffn_down.weight"), ("transformer.layers.1.linear2.bias", "blk.1.ffn_down.bias"),
            ("ln_f.weight", "output_norm.weight"), ("ln_f.bias", "output_norm.bias"), ("lm_head.weight", "output.weight"),
        ]
        for (training, gguf) in table {
            XCTAssertEqual(NamingLayout.gguf.name(of: training), gguf)
            XCTAssertEqual(NamingLayout.gguf.training(of: gguf), training)
            XCTAssertFalse(NamingLayout.gguf.isTransposed(training))
        }
        XCTAssertNil(NamingLayout.gguf.training(of: "blk.01.ffn_up.weight"))
        XCTAssertEqual(NamingLayout.detect(["token_embd.weight", "blk.0.attn_qkv.weight"]), .gguf)
    }

    func testTransposeOfEveryElementSize() throws {
        for dtype in [DType.i8, .bf16, .f32, .f64] {
            // Up to sizes split across the cores (1 MiB and more), with a ragged split.
            for (rows, cols) in [(1, 1), (3, 70), (37, 33), (64, 32), (65, 1), (301, 1001)] {
                let n = rows * cols * dtype.byteSize
                let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 / 7) }
                let t = try Tensor(dtype: dtype, shape: [rows, cols], bytes: bytes).transposed()
                XCTAssertEqual(t.shape, [cols, rows])
                let e = dtype.byteSize
                var expected = [UInt8](repeating: 0, count: n)
                for r in 0..<rows {
                    for c in 0..<cols { for b in 0..<e { expected[(c * rows + r) * e + b] = bytes[(r * cols + c) * e + b] } }
                }
                XCTAssertEqual(t.bytes, expected, "\(dtype) \(rows)×\(cols)")
            }
        }
    }

    func testGPT2ConfigReadsBackAsTheSameModelAndRefusesOtherFunctions() throws {
        var assembly = ConfigAssembly(source: "test")
        try assembly.add(GPT2Bundle().configJSON(config, torchDtype: "float32"), origin: "config.json")
        XCTAssertEqual(try assembly.resolve(), config)
        XCTAssertEqual(GPT2Bundle().modelType(config), "gpt2")
        XCTAssertEqual(NativeBundle().modelType(config), "arafusion_ar")
        for (field, value, expected) in [("activation_function", JSONValue.string("gelu_new"), ConfigError.gpt2Activation(origin: "config.json", activation: "gelu_new")),
                                         ("scale_attn_weights", .bool(false), .gpt2Flag(origin: "config.json", field: "scale_attn_weights", required: true, found: "false")),
                                         ("add_cross_attention", .bool(true), .gpt2Flag(origin: "config.json", field: "add_cross_attention", required: false, found: "true"))] {
            guard case var .object(members) = GPT2Bundle().configJSON(config, torchDtype: "float32") else { return XCTFail() }
            members = members.map { $0.key == field ? .init(field, value) : $0 }
            var a = ConfigAssembly(source: "test")
            XCTAssertThrowsError(try a.add(.object(members), origin: "config.json"), field) { error in
                XCTAssertEqual(error as? ConfigError, expected)
            }
        }
    }
}
