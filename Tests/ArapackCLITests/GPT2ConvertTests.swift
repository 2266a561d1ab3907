import ArapackFormats
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// `arapack convert --to gpt2` as users run it: the GPT-2 form of docs/model-family.md (names, Conv1D transposes,
/// GPT2Config), read back by every command, converted back bit-exact, MDLM and int8 refused.
/// Expected names and values are spelled here from the spec's table, not taken from arapack's own mapping.
final class GPT2ConvertTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let gelu = TestSupport.fixture("golden/ar_gelu.pt")

    /// GPT-2 key → (training key, transposed), from docs/model-family.md's table.
    func spelledMapping(layers: Int) -> [String: (String, Bool)] {
        var m: [String: (String, Bool)] = [
            "transformer.wte.weight": ("token_embedding.weight", false), "transformer.wpe.weight": ("position_embedding.weight", false),
            "transformer.ln_f.weight": ("ln_f.weight", false), "transformer.ln_f.bias": ("ln_f.bias", false),
        ]
        for i in 0..<layers {
            let g = "transformer.h.\(i).", t = "transformer.layers.\(i)."
            for (gpt2, training, transposed) in [
                ("ln_1.weight", "norm1.weight", false), ("ln_1.bias", "norm1.bias", false),
                ("ln_2.weight", "norm2.weight", false), ("ln_2.bias", "norm2.bias", false),
                ("attn.c_attn.weight", "self_attn.in_proj_weight", true), ("attn.c_attn.bias", "self_attn.in_proj_bias", false),
                ("attn.c_proj.weight", "self_attn.out_proj.weight", true), ("attn.c_proj.bias", "self_attn.out_proj.bias", false),
                ("mlp.c_fc.weight", "linear1.weight", true), ("mlp.c_fc.bias", "linear1.bias", false),
                ("mlp.c_proj.weight", "linear2.weight", true), ("mlp.c_proj.bias", "linear2.bias", false),
            ] { m[g + gpt2] = (t + training, transposed) }
        }
        return m
    }

    /// The 4-byte elements of a 2-D float32 tensor, transposed.
    func transposedFloats(_ t: Tensor) throws -> [Float] {
        let v = try t.floats(), rows = t.shape[0], cols = t.shape[1]
        return (0..<(rows * cols)).map { k in v[(k % rows) * cols + k / rows] }
    }

    func testGPT2BundleHasGPT2NamesTransposedWeightsAndConfig() throws {
        let dst = scratch + "/gpt2"
        let r = try TestSupport.arapack("convert", gelu, dst, "--to", "gpt2", "--tokenizer", TestSupport.fixture("tokenizer/valid"))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("wrote \(dst) (gpt2): arafusion_ar, 2 layers"), r.stdout)
        XCTAssertEqual(try directoryEntries(dst), [".gitattributes", "README.md", "base_tokenizer", "config.json", "generation_config.json",
                                                   "manifest.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                                                   "tokenizer_config.json", "training_metadata.json"], "no wrapper in a GPT-2 bundle")
        let source = try TorchCheckpoint(path: gelu)
        let bundle = try SafetensorsFile(path: dst + "/model.safetensors")
        let mapping = spelledMapping(layers: 2)
        XCTAssertEqual(Set(bundle.tensorNames), Set(mapping.keys), "exactly GPT-2's names, the tied head not stored")
        for (name, (training, transposed)) in mapping {
            let stored = try bundle.tensor(named: name), original = try source.tensor(named: training)
            XCTAssertEqual(stored.shape, transposed ? original.shape.reversed() : original.shape, name)
            XCTAssertEqual(try stored.floats(), transposed ? try transposedFloats(original) : try original.floats(), name)
        }
        XCTAssertEqual(bundle.metadata["lm_head.weight"], "transformer.wte.weight")
        let c = try TestSupport.loadJSON(dst + "/config.json")
        let expected: [(String, JSONValue)] = [
            ("model_type", .string("gpt2")), ("architectures", .array([.string("GPT2LMHeadModel")])), ("n_embd", .int(32)),
            ("n_layer", .int(2)), ("n_head", .int(4)), ("n_inner", .int(64)), ("n_positions", .int(16)), ("vocab_size", .int(128)),
            ("activation_function", .string("gelu")), ("tie_word_embeddings", .bool(true)), ("scale_attn_weights", .bool(true)),
            ("bos_token_id", .int(1)), ("eos_token_id", .int(2)), ("pad_token_id", .int(5)), ("torch_dtype", .string("float32")),
        ]
        for (field, value) in expected { XCTAssertEqual(c[field], value, field) }
        for field in ["resid_pdrop", "embd_pdrop", "attn_pdrop"] { XCTAssertEqual(c[field]?.doubleValue, 0, field) }
        XCTAssertEqual(try TestSupport.loadJSON(dst + "/generation_config.json")["max_length"], .int(16))
        let manifest = try TestSupport.loadJSON(dst + "/manifest.json")
        XCTAssertEqual(manifest["model_type"], .string("gpt2"))
        XCTAssertEqual(manifest["tied_groups"], .array([.array([.string("lm_head.weight"), .string("transformer.wte.weight")])]))
        XCTAssertEqual(manifest["files"]?.elements?.compactMap { $0["path"]?.stringValue }.contains("README.md"), true)
        try TestSupport.validateAgainstSchema("manifest.schema.json", [dst + "/manifest.json"])
        try TestSupport.validateAgainstSchema("gpt2-config.schema.json", [dst + "/config.json"])

        let card = try String(contentsOfFile: dst + "/README.md", encoding: .utf8)
        XCTAssertTrue(card.hasPrefix("---\nlicense: apache-2.0\nlanguage:\n- ar\nlibrary_name: transformers\npipeline_tag: text-generation\n"), card)
        XCTAssertFalse(card.contains("custom_code"), "no remote code in a GPT-2 bundle")
        XCTAssertTrue(card.contains("| parameters | 21760 "), card)
        XCTAssertTrue(card.contains("from_pretrained(\"./AraFusion-AR-22K\", torch_dtype"), card)
        XCTAssertTrue(card.contains("| model.safetensors | \(try fileSize(dst + "/model.safetensors")) | `\(try SHA256.hex(ofFile: dst + "/model.safetensors"))` |"), card)
        XCTAssertEqual(try String(contentsOfFile: dst + "/.gitattributes", encoding: .utf8).split(separator: "\n").first,
                       "*.safetensors filter=lfs diff=lfs merge=lfs -text")
    }

    func testEveryCommandReadsGPT2BundlesAndConvertsThemBackBitExact() throws {
        let gpt2 = scratch + "/g", native = scratch + "/n"
        XCTAssertEqual(try TestSupport.arapack("convert", gelu, gpt2, "--to", "gpt2", "--max-shard-size", "30kB", "--archive").status, 0)
        XCTAssertEqual(try TestSupport.arapack("convert", gelu, native).status, 0)
        XCTAssertTrue(try directoryEntries(gpt2).contains("model.safetensors.index.json"), "sharded")
        for target in [gpt2, gpt2 + ".tar.zst"] {
            let v = try TestSupport.arapack("verify", target)
            XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        }
        // A float32 GPT-2 bundle is lossless: only the layout changed. The source trained with dropout 0.1, as the real
        // runs do; the export sets every dropout to 0, and parity compares the function, not training-only settings.
        XCTAssertTrue(try TestSupport.arapack("inspect", gelu).stdout.contains("\"dropout\":0.1"), "the fixture records the dropout it trained with")
        XCTAssertEqual(try TestSupport.loadJSON(gpt2 + "/config.json")["resid_pdrop"]?.serialized(), "0.0")
        var r = try TestSupport.arapack("verify", gpt2, "--parity", "--against", gelu)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("thresholds: lossless") && r.stdout.contains("max |Δlogit| 0 "), r.stdout)
        r = try TestSupport.arapack("convert", gelu, scratch + "/g-parity", "--to", "gpt2", "--parity")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("thresholds: lossless") && r.stdout.contains("parity passed"), r.stdout)
        r = try TestSupport.arapack("verify", gpt2, "--golden", TestSupport.fixture("golden/ar_gelu.golden.safetensors"))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let runGPT2 = try TestSupport.arapack("run", gpt2, "--ids", "1,7,9,3")
        XCTAssertEqual(runGPT2.status, 0, runGPT2.stderr)
        XCTAssertEqual(runGPT2.stdout.split(separator: "\n").dropFirst(), try TestSupport.arapack("run", native, "--ids", "1,7,9,3").stdout.split(separator: "\n").dropFirst())
        r = try TestSupport.arapack("inspect", gpt2)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("transformer.h.1.mlp.c_proj.weight"), r.stdout)

        // Back to torch, dcp and a native bundle: every tensor bit-identical to the source's.
        let source = try TorchCheckpoint(path: gelu)
        XCTAssertEqual(try TestSupport.arapack("convert", gpt2, scratch + "/back.pt", "--to", "torch").status, 0)
        XCTAssertEqual(try TestSupport.arapack("convert", gpt2, scratch + "/back-dcp", "--to", "dcp").status, 0)
        XCTAssertEqual(try TestSupport.arapack("convert", gpt2 + ".tar.zst", scratch + "/back-bundle").status, 0)
        let torch = try TorchCheckpoint(path: scratch + "/back.pt")
        let dcp = try DCPCheckpoint(directory: scratch + "/back-dcp")
        for name in source.tensorNames {
            let original = try source.tensor(named: name)
            XCTAssertTrue(try torch.tensor(named: name).isBitIdentical(to: original), name)
            XCTAssertTrue(try dcp.tensor(named: "model." + name).isBitIdentical(to: original), name)
        }
        XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/back-bundle/model.safetensors"), try SHA256.hex(ofFile: native + "/model.safetensors"),
                       "a native bundle made from the GPT-2 bundle equals one made from the source")

        // Deterministic: the same conversion again gives the same bytes.
        XCTAssertEqual(try TestSupport.arapack("convert", gelu, scratch + "/again/g", "--to", "gpt2", "--max-shard-size", "30kB", "--archive").status, 2,
                       "the folder for DST must exist")
        try FileManager.default.createDirectory(atPath: scratch + "/again", withIntermediateDirectories: false)
        XCTAssertEqual(try TestSupport.arapack("convert", gelu, scratch + "/again/g", "--to", "gpt2", "--max-shard-size", "30kB", "--archive").status, 0)
        for file in try BundleFolder.files(gpt2) {
            XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/again/g/" + file), try SHA256.hex(ofFile: gpt2 + "/" + file), file)
        }
        XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/again/g.tar.zst"), try SHA256.hex(ofFile: gpt2 + ".tar.zst"))
    }

    func testBF16GPT2BundlePassesCastParity() throws {
        let dst = scratch + "/bf16"
        let r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_relu.pt"), dst, "--to", "gpt2", "--dtype", "bf16", "--parity")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("thresholds: bf16") && r.stdout.contains("parity passed"), r.stdout)
        XCTAssertEqual(try TestSupport.loadJSON(dst + "/config.json")["activation_function"], .string("relu"))
        XCTAssertEqual(try SafetensorsFile(path: dst + "/model.safetensors").descriptor(named: "transformer.h.0.mlp.c_fc.weight"),
                       TensorDescriptor(dtype: .bf16, shape: [32, 64]))
    }

    func testRefusals() throws {
        let dst = scratch + "/out"
        var r = try TestSupport.arapack("convert", TestSupport.fixture("golden/mdlm_gelu.pt"), dst, "--to", "gpt2", "--archive")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("MDLM (bidirectional) model has no GPT-2 form"), r.stderr)
        XCTAssertEqual(try directoryEntries(scratch), [], "nothing at DST")
        r = try TestSupport.arapack("convert", gelu, dst, "--to", "gpt2", "--dtype", "int8")
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--dtype int8 is not written in the GPT-2 layout"), r.stderr)
        r = try TestSupport.arapack("convert", gelu, dst, "--to", "torch", "--license", "mit")
        XCTAssertEqual(r.status, 64, "--license belongs to bundles")
        r = try TestSupport.arapack("convert", gelu, dst, "--base-model", "../etc")
        XCTAssertEqual(r.status, 64, "a base model is a Hub id")
        r = try TestSupport.arapack("convert", gelu, dst, "--to", "gpt2", "--license", "mit\nlicense: evil")
        XCTAssertEqual(r.status, 64, "a license id cannot break the front matter")
        XCTAssertEqual(try directoryEntries(scratch), [])
        r = try TestSupport.arapack("convert", gelu, dst, "--to", "gpt2", "--license", "mit")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try String(contentsOfFile: dst + "/README.md", encoding: .utf8).hasPrefix("---\nlicense: mit\n"))
    }

    /// verify checks a GPT-2 bundle against its GPT2Config: a config edited (and the manifest re-hashed to
    /// match) so that GPT2LMHeadModel would compute something else is a failed check.
    func testVerifyFindsGPT2ConfigsThatComputeSomethingElse() throws {
        let dst = scratch + "/g"
        XCTAssertEqual(try TestSupport.arapack("convert", gelu, dst, "--to", "gpt2").status, 0)
        try TestSupport.verifyEdited(dst, file: "config.json", edits: [
            ("\"activation_function\": \"gelu\"", "\"activation_function\": \"gelu_new\"", "activation_function \"gelu_new\""),
            ("\"scale_attn_by_inverse_layer_idx\": false", "\"scale_attn_by_inverse_layer_idx\": true", "scale_attn_by_inverse_layer_idx must be false"),
            ("\"n_inner\": 64", "\"n_inner\": 65", "intermediate_size is 65"),
            ("\"GPT2LMHeadModel\"", "\"GPT2Model\"", "architectures must be [\"GPT2LMHeadModel\"]"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, edit.to + ": " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("FAIL  config: ") && r.stdout.contains(edit.fragment), edit.to + ": " + r.stdout)
            XCTAssertTrue(r.stdout.contains("ok    manifest"), "the manifest was re-hashed: " + r.stdout)
        }
    }
}
