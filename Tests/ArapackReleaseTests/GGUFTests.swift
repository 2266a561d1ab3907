import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// The GGUF writer, reader and export without llama.cpp (GGUFInteropTests has llama.cpp and gguf-py).
final class GGUFTests: XCTestCase {
    /// What each release form holds, in one place, matched by case: the native bundle everything; the GPT-2 and GGUF
    /// forms causal models without int8; GGUF GELU only (llama.cpp's gpt2 graph always applies GELU).
    func testEachReleaseFormRefusesWhatItCannotHold() throws {
        let ar = try ReleaseModel(path: TestSupport.fixture("golden/ar_gelu.pt")).config
        let mdlm = try ReleaseModel(path: TestSupport.fixture("golden/mdlm_gelu.pt")).config
        let relu = try ReleaseModel(path: TestSupport.fixture("golden/ar_relu.pt")).config
        let (bundle, gpt2, gguf): (any ReleaseForm, any ReleaseForm, any ReleaseForm) = (NativeBundle(), GPT2Bundle(), GGUFRelease())
        let rows: [(any ReleaseForm, ModelConfig, String?, ReleaseFormError.Refusal?)] = [
            (bundle, mdlm, "int8", nil), (bundle, mdlm, "int4", nil), (bundle, relu, nil, nil), (bundle, ar, "f16", nil),
            (bundle, ar, "q4_k_m", .dtype("q4_k_m")),
            (gpt2, ar, "bf16", nil), (gpt2, relu, nil, nil),
            (gpt2, mdlm, nil, .bidirectional), (gpt2, ar, "int8", .dtype("int8")), (gpt2, ar, "int4", .dtype("int4")),
            (gguf, ar, nil, nil), (gguf, ar, "bf16", nil), (gguf, mdlm, nil, .bidirectional),
            (gguf, relu, nil, .activation("relu")), (gguf, ar, "int8", .dtype("int8")), (gguf, ar, "int4", .dtype("int4")),
        ]
        for (form, config, dtype, expected) in rows {
            do {
                try form.check(config, dtype: dtype, source: "s")
                XCTAssertNil(expected, "\(form.name) accepted what it must refuse")
            } catch let e as ReleaseFormError {
                XCTAssertEqual(e.refusal, expected, form.name)
                XCTAssertEqual(e.form, form.name)
                XCTAssertEqual(e.source, "s")
            }
        }
        XCTAssertEqual(ReleaseForms.all.map(\.name), ["bundle", "gpt2", "gguf", "torch", "dcp"])
        XCTAssertEqual(ReleaseForms.releases.map(\.name), ["bundle", "gpt2", "gguf"])
        XCTAssertEqual(ReleaseForms.releases.map(\.layout), [.release, .gpt2, .gguf])
        XCTAssertEqual(ReleaseForms.dtypeNames, ["f32", "bf16", "f16", "int8", "int4", "q8_0", "q6_k", "q5_k_m", "q5_k", "q5_0", "q4_k_m", "q4_k", "q4_0"])
        XCTAssertEqual(ReleaseForms.bundles.map(\.name), ["bundle", "gpt2"])
        XCTAssertEqual(ReleaseForms.bundleForm(modelType: "gpt2")?.name, "gpt2")
        XCTAssertEqual(ReleaseForms.bundleForm(modelType: "arafusion_mdlm")?.name, "bundle")
        XCTAssertNil(ReleaseForms.bundleForm(modelType: "llama"))
    }

    /// A model written as GGUF reads back through arapack's reader as the same model: every tensor bit-equal in f32
    /// and within its type's step otherwise, the config from the metadata, the tie stored once, vectors and positions
    /// f32 in every scheme, `general.file_type` as llama.h numbers it, the scheme recognised from the file.
    func testEverySchemeReadsBackAsTheModel() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let source = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        let tokenizer = try TokenizerFiles(directory: TestSupport.fixture("gguf/bytelevel"))
        let model = try ReleaseModel(path: source, tokenizer: tokenizer)
        // llama.h's llama_ftype numbers.
        let fileTypes = ["f32": 0, "bf16": 32, "f16": 1, "q8_0": 7, "q6_k": 18, "q5_k_m": 17, "q5_k": 17, "q5_0": 8, "q4_k_m": 15, "q4_k": 15, "q4_0": 2]
        // The largest |error| of a value, in units of its row's largest |value|, that each scheme's bits allow.
        let tolerance: [String: Double] = ["f32": 0, "bf16": 0.0079, "f16": 0.001, "q8_0": 0.01, "q6_k": 0.05, "q5_k_m": 0.1,
                                           "q5_k": 0.1, "q5_0": 0.1, "q4_k_m": 0.2, "q4_k": 0.2, "q4_0": 0.2]
        XCTAssertEqual(Set(GGUFScheme.all.map(\.name)), Set(fileTypes.keys))
        for scheme in GGUFScheme.all {
            let path = dir + "/\(scheme.name).gguf"
            try GGUFExport.write(model, options: GGUFOptions(scheme: scheme), to: path, replacing: false, progress: Progress(enabled: false))
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file["general.architecture"], .string("gpt2"))
            XCTAssertEqual(file["general.file_type"]?.intValue, fileTypes[scheme.name], scheme.name)
            XCTAssertEqual(file["general.quantization_version"]?.intValue, scheme.quantizes ? 2 : nil, scheme.name)
            XCTAssertFalse(file.tensorNames.contains("output.weight"), "tied: stored once")
            for e in file.entries {
                XCTAssertEqual(e.range.lowerBound % 32, 0, e.name)
                if e.shape.count == 1 || e.name == "position_embd.weight" { XCTAssertEqual(e.type, .f32, e.name) }
            }
            let back = try ReleaseModel(path: path)
            XCTAssertEqual(back.config.functionDifferences(from: model.config), [], scheme.name)
            XCTAssertTrue(back.tied)
            XCTAssertEqual(back.ggufScheme, scheme, scheme.name)
            for (training, _) in model.names {
                let a = try model.tensor(training).floats(), b = try back.tensor(training).floats()
                let columns = try model.tensor(training).shape.last!
                for row in stride(from: 0, to: a.count, by: columns) {
                    let top = a[row..<(row + columns)].map { abs($0) }.max()!
                    let worst = zip(a[row..<(row + columns)], b[row..<(row + columns)]).map { abs($0 - $1) }.max()!
                    XCTAssertLessThanOrEqual(Double(worst), tolerance[scheme.name]! * Double(top), "\(scheme.name) \(training) row \(row / columns)")
                }
            }
            XCTAssertEqual(try GGUFVerifier.verify(path: path).problems, [], scheme.name)
        }
    }

    /// The types llama.cpp's llama_model_quantize gives the trained twin (d 64, 2 layers, FFN 256), worked by hand from
    /// llama-quant.cpp: rows of 64 are not whole super-blocks of 256, so Q4_K falls back to Q5_0, Q5_K to Q5_1, Q6_K to
    /// Q8_0; the tied embedding is the output (Q8_0, its rows not whole super-blocks); in a mix, layer 1 of 2 uses
    /// more bits (its attn_qkv and ffn_down get Q6_K); ffn_down's rows of 256 keep the K-quants.
    func testEachTensorGetsTheTypeLlamaCppGivesIt() throws {
        let config = try ReleaseModel(path: TestSupport.fixture("trained/arafusion_tiny_ar.pt")).config
        func types(_ name: String) -> [String: String] {
            let scheme = GGUFScheme.named(name)!
            var out: [String: String] = [:]
            for (training, shape) in ModelFamily.expectedShapes(config) where training != ModelFamily.lmHead {
                out[NamingLayout.gguf.name(of: training)] = scheme.type(of: training, shape: shape, layers: config.layers, tied: true).name
            }
            return out.filter { !$0.key.contains("norm") && !$0.key.hasSuffix(".bias") }
        }
        XCTAssertEqual(types("q4_k_m"), [
            "token_embd.weight": "Q8_0", "position_embd.weight": "F32",
            "blk.0.attn_qkv.weight": "Q5_0", "blk.0.attn_output.weight": "Q5_0", "blk.0.ffn_up.weight": "Q5_0", "blk.0.ffn_down.weight": "Q4_K",
            "blk.1.attn_qkv.weight": "Q8_0", "blk.1.attn_output.weight": "Q5_0", "blk.1.ffn_up.weight": "Q5_0", "blk.1.ffn_down.weight": "Q6_K",
        ])
        XCTAssertEqual(types("q5_k_m"), [
            "token_embd.weight": "Q8_0", "position_embd.weight": "F32",
            "blk.0.attn_qkv.weight": "Q5_1", "blk.0.attn_output.weight": "Q5_1", "blk.0.ffn_up.weight": "Q5_1", "blk.0.ffn_down.weight": "Q5_K",
            "blk.1.attn_qkv.weight": "Q8_0", "blk.1.attn_output.weight": "Q5_1", "blk.1.ffn_up.weight": "Q5_1", "blk.1.ffn_down.weight": "Q6_K",
        ])
        XCTAssertEqual(types("q4_k"), [
            "token_embd.weight": "Q5_0", "position_embd.weight": "F32",
            "blk.0.attn_qkv.weight": "Q5_0", "blk.0.attn_output.weight": "Q5_0", "blk.0.ffn_up.weight": "Q5_0", "blk.0.ffn_down.weight": "Q4_K",
            "blk.1.attn_qkv.weight": "Q5_0", "blk.1.attn_output.weight": "Q5_0", "blk.1.ffn_up.weight": "Q5_0", "blk.1.ffn_down.weight": "Q4_K",
        ])
        // llama.cpp's use_more_bits over 24 layers (the released model): the first 3, the last 3, every third between.
        XCTAssertEqual((0..<24).filter { GGUFScheme.usesMoreBits(layer: $0, of: 24) }, [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23])
    }

    /// `--to gguf` refuses what llama.cpp's gpt2 graph cannot compute, and the flags that do not apply, before
    /// anything is written; the same input gives the same bytes whatever DST is called.
    func testConvertRefusesWhatHasNoGGUFFormAndWritesTheSameBytes() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let tok = TestSupport.fixture("tokenizer/valid")
        let rows: [(args: [String], status: Int32, fragment: String)] = [
            (["golden/mdlm_gelu.pt", "--tokenizer", tok], 2, "an MDLM (bidirectional) model has no GGUF form"),
            (["golden/ar_relu.pt", "--tokenizer", tok], 2, "activation \"relu\" has no GGUF form: llama.cpp's gpt2 architecture always applies GELU"),
            (["golden/ar_gelu.pt"], 2, "a GGUF file carries its tokenizer: pass --tokenizer DIR"),
            (["golden/ar_gelu.pt", "--tokenizer", tok], 2, "pre-tokenizer Whitespace: llama.cpp reproduces ByteLevel"),
            (["golden/ar_gelu.pt", "--tokenizer", tok, "--dtype", "int8"], 64, "--dtype int8 writes bundles only"),
            (["golden/ar_gelu.pt", "--tokenizer", tok, "--archive"], 64, "--archive applies to bundles only"),
        ]
        for row in rows {
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture(row.args[0]), dir + "/x.gguf", "--to", "gguf"] + row.args.dropFirst())
            XCTAssertEqual(r.status, row.status, r.stderr)
            XCTAssertTrue(r.stderr.contains(row.fragment), r.stderr)
            XCTAssertEqual(try directoryEntries(dir), [], "nothing written")
        }
        for block in ["q8_0", "q4_k_m", "q6_k"] {
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture("golden/ar_gelu.pt"), dir + "/x", "--dtype", block])
            XCTAssertEqual(r.status, 64)
            XCTAssertTrue(r.stderr.contains("--dtype \(block) is a GGUF block format: it applies to --to gguf (bundles take int8 and int4)"), r.stderr)
        }
        try FileManager.default.createDirectory(atPath: dir + "/deeper/and/deeper", withIntermediateDirectories: true)
        var digests: [String] = []
        for dst in [dir + "/a.gguf", dir + "/deeper/and/deeper/other-name.gguf"] {
            let r = try TestSupport.arapack("convert", TestSupport.fixture("trained/arafusion_tiny_ar.pt"), dst, "--to", "gguf", "--dtype", "q8_0",
                                           "--tokenizer", TestSupport.fixture("gguf/metaspace"))
            XCTAssertEqual(r.status, 0, r.stderr)
            digests.append(try SHA256.hex(ofFile: dst))
        }
        XCTAssertEqual(digests[0], digests[1])
    }
}
