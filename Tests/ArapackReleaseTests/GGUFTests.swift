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
        let rows: [(any ReleaseForm, ModelConfig, DType?, ReleaseFormError.Refusal?)] = [
            (bundle, mdlm, .i8, nil), (bundle, relu, nil, nil), (bundle, ar, .f16, nil),
            (gpt2, ar, .bf16, nil), (gpt2, relu, nil, nil),
            (gpt2, mdlm, nil, .bidirectional), (gpt2, ar, .i8, .dtype("int8")),
            (gguf, ar, nil, nil), (gguf, ar, .bf16, nil), (gguf, mdlm, nil, .bidirectional),
            (gguf, relu, nil, .activation("relu")), (gguf, ar, .i8, .dtype("int8")),
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
        XCTAssertEqual(ReleaseForms.dtypeNames, ["f32", "bf16", "f16", "int8", "q8_0"])
        XCTAssertEqual(ReleaseForms.bundles.map(\.name), ["bundle", "gpt2"])
        XCTAssertEqual(ReleaseForms.bundleForm(modelType: "gpt2")?.name, "gpt2")
        XCTAssertEqual(ReleaseForms.bundleForm(modelType: "arafusion_mdlm")?.name, "bundle")
        XCTAssertNil(ReleaseForms.bundleForm(modelType: "llama"))
    }

    /// A model written as GGUF reads back through arapack's reader as the same model: every tensor bit-equal in f32,
    /// the config from the metadata, the tie stored once, vectors and positions f32 in every type.
    func testEveryTypeReadsBackAsTheModel() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let source = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        let tokenizer = try TokenizerFiles(directory: TestSupport.fixture("gguf/bytelevel"))
        let model = try ReleaseModel(path: source, tokenizer: tokenizer)
        for type in GGUF.TensorType.allCases {
            let path = dir + "/\(type.name).gguf"
            try GGUFExport.write(model, options: GGUFOptions(type: type), to: path, replacing: false, progress: Progress(enabled: false))
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file["general.architecture"], .string("gpt2"))
            XCTAssertEqual(file["general.file_type"]?.intValue, Int(type.fileType))
            XCTAssertFalse(file.tensorNames.contains("output.weight"), "tied: stored once")
            for e in file.entries {
                XCTAssertEqual(e.range.lowerBound % 32, 0, e.name)
                if e.shape.count == 1 || e.name == "position_embd.weight" { XCTAssertEqual(e.type, .f32, e.name) } else { XCTAssertEqual(e.type, type, e.name) }
            }
            let back = try ReleaseModel(path: path)
            XCTAssertEqual(back.config.functionDifferences(from: model.config), [], type.name)
            XCTAssertTrue(back.tied)
            if type == .f32 {
                for (training, _) in model.names {
                    XCTAssertTrue(try back.tensor(training).isBitIdentical(to: model.tensor(training)), training)
                }
            }
            XCTAssertEqual(try GGUFVerifier.verify(path: path).problems, [], type.name)
        }
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
        let q8 = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture("golden/ar_gelu.pt"), dir + "/x.gguf", "--dtype", "q8_0"])
        XCTAssertEqual(q8.status, 64)
        XCTAssertTrue(q8.stderr.contains("--dtype q8_0 is GGUF's block format"), q8.stderr)
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
