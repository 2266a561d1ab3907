import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Native bundles load in transformers as the model card says, through the wrapper arapack writes
/// (scripts/interop_transformers.py): AR f32, bf16, f16 sharded, ReLU, int8 (compressed-tensors, no quantization
/// arguments) and MDLM; logits bit-identical to ARBaseline on the source (cast alike), int8 logits equal to
/// arapack's own forward pass within 1e-4; greedy generate equal to a greedy loop over ARBaseline; top-p sampling;
/// pipeline; both tokenizer loads; the card's front matter and quick-start code. The last transformers 4.x loads the
/// AR f32 bundle. Needs `ARAPACK_PYTHON` with torch, transformers, compressed-tensors and yaml, and
/// `ARAPACK_TRANSFORMERS4` (CI fails when they are missing; scripts/test.sh installs them).
final class TransformersInteropTests: XCTestCase {
    static let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_transformers.py").path

    func convert(_ source: String, _ bundle: String, _ options: [String]) throws {
        let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture(source), bundle] + options)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func interop(_ python: String, _ bundle: String, _ source: String, _ extra: [String] = [], environment: [String: String]? = nil,
                 file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try TestSupport.run(python, [Self.script, bundle, TestSupport.fixture(source), "--card"] + extra, environment: environment)
        XCTAssertEqual(r.status, 0, "\(bundle): " + r.stdout + r.stderr, file: file, line: line)
        XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout, file: file, line: line)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout, file: file, line: line)
        return r.stdout
    }

    func testTransformersLoadsEveryKindOfNativeBundleAsTheCardSays() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "transformers", "compressed_tensors", "yaml"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let cases: [(source: String, options: [String])] = [
            ("trained/arafusion_tiny_ar.pt", ["--tokenizer", TestSupport.fixture("trained/tokenizer")]),
            ("golden/ar_gelu.pt", ["--dtype", "bf16", "--tokenizer", TestSupport.fixture("tokenizer/valid")]),
            ("golden/ar_long.pt", ["--dtype", "f16", "--max-shard-size", "100kB"]),
            ("golden/ar_relu.pt", []),
            ("golden/mdlm_gelu.pt", []),
        ]
        for (i, c) in cases.enumerated() {
            let bundle = dir + "/bundle-\(i)"
            try convert(c.source, bundle, c.options)
            let out = try interop(python, bundle, c.source)
            if c.source.hasPrefix("golden/mdlm") {
                XCTAssertTrue(out.contains("ok    AutoModelForMaskedLM loads MDLMForMaskedDiffusion"), out)
            } else {
                XCTAssertTrue(out.contains("equals a greedy loop over ARBaseline"), out)
            }
            if c.options.contains("--tokenizer") {
                XCTAssertTrue(out.contains("subfolder': 'base_tokenizer'}) loads"), out)
            }
        }

        // The check bites: one stored value changed and the bundle no longer matches ARBaseline.
        let edited = dir + "/bundle-3"
        var weights = try Data(contentsOf: URL(fileURLWithPath: edited + "/model.safetensors"))
        weights[weights.count - 1] ^= 0x40  // the exponent of the last float of the last tensor
        try weights.write(to: URL(fileURLWithPath: edited + "/model.safetensors"))
        let r = try TestSupport.run(python, [Self.script, edited, TestSupport.fixture("golden/ar_relu.pt")])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("FAIL  logits bit-identical"), r.stdout)
    }

    /// int8: a plain from_pretrained with compressed-tensors installed loads it, and arapack's forward pass of the
    /// same bundle gives the same logits within 1e-4 (`verify --golden` on what transformers computed).
    func testInt8BundlesLoadThroughCompressedTensorsAndAgreeWithArapack() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "transformers", "compressed_tensors", "yaml"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        for (i, options) in [[], ["--int8-group-size", "16"], ["--keep", "model.transformer.layers.1.*"]].enumerated() {
            let bundle = dir + "/int8-\(i)", golden = dir + "/int8-\(i).golden.safetensors"
            try convert("trained/arafusion_tiny_ar.pt", bundle, ["--dtype", "int8", "--tokenizer", TestSupport.fixture("trained/tokenizer")] + options)
            let out = try interop(python, bundle, "trained/arafusion_tiny_ar.pt", ["--golden-out", golden])
            XCTAssertTrue(out.contains("ok    int8 logits"), out)
            let verify = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle, "--golden", golden])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            XCTAssertTrue(verify.stdout.contains("parity passed"), verify.stdout)
        }
        // What compressed-tensors needs is in config.json: format in the group, Linear targets, the tied head ignored.
        let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/int8-2/config.json"))))
        let q = try XCTUnwrap(config["quantization_config"])
        XCTAssertEqual(q["config_groups"]?["group_0"]?["format"], .string("int-quantized"))
        XCTAssertEqual(q["config_groups"]?["group_0"]?["targets"], .array([.string("Linear")]))
        XCTAssertEqual(q["ignore"], .array(["model.lm_head", "model.transformer.layers.1.self_attn.out_proj", "model.transformer.layers.1.linear1",
                                            "model.transformer.layers.1.linear2"].map { .string($0) }))
    }

    /// int4 (W4A16): every quantized weight is compressed-tensors' own bytes (scripts/interop_int4.py runs its compressor
    /// on the source), a plain from_pretrained with compressed-tensors installed loads the bundle, and arapack's forward
    /// pass of the same bundle gives transformers' logits within 1e-5 × max(1, max |logit|) (`verify --golden`). On the
    /// trained twin (groups of 32; per channel with a layer kept), ar_odd (groups of 8) and a twin with d 256 made here
    /// by real PyTorch with scripts/interop_gguf.py (the default groups of 128).
    func testInt4BundlesAreCompressedTensorsOwnAndLoadThroughTransformers() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "numpy", "transformers", "compressed_tensors", "yaml"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let twin = dir + "/twin256.pt"
        let gguf = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_gguf.py").path
        let made = try TestSupport.run(python, [gguf, "twin", twin, "256", "2", "512"])  // seeded, made by real PyTorch
        XCTAssertEqual(made.status, 0, made.stdout + made.stderr)
        let tokenizer = ["--tokenizer", TestSupport.fixture("trained/tokenizer")]
        let cases: [(source: String, options: [String], group: String)] = [
            (TestSupport.fixture("trained/arafusion_tiny_ar.pt"), ["--int4-group-size", "32"] + tokenizer, "group size 32"),
            (TestSupport.fixture("trained/arafusion_tiny_ar.pt"), ["--int4-group-size", "0", "--keep", "model.transformer.layers.1.*"], "channel, group size None"),
            (TestSupport.fixture("golden/ar_odd.pt"), ["--int4-group-size", "8"], "group size 8"),
            (twin, [], "group size 128"),
        ]
        for (i, c) in cases.enumerated() {
            let bundle = dir + "/int4-\(i)", golden = dir + "/int4-\(i).golden.safetensors"
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", c.source, bundle, "--dtype", "int4"] + c.options)
            XCTAssertEqual(r.status, 0, r.stderr)
            let bytes = try TestSupport.run(python, [TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_int4.py").path, bundle, c.source])
            XCTAssertEqual(bytes.status, 0, bytes.stdout + bytes.stderr)
            XCTAssertTrue(bytes.stdout.contains("4 bits, \(c.group.hasPrefix("channel") ? "channel" : "group")"), bytes.stdout)
            XCTAssertTrue(bytes.stdout.contains(c.group), bytes.stdout)
            XCTAssertTrue(bytes.stdout.contains("ok    quantization_config reads as compressed-tensors' W4A16 preset"), bytes.stdout)
            XCTAssertTrue(bytes.stdout.hasSuffix("\nok\n"), bytes.stdout)
            let run = try TestSupport.run(python, [Self.script, bundle, c.source, "--card", "--golden-out", golden])
            XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
            XCTAssertTrue(run.stdout.contains("ok    int4 logits"), run.stdout)
            XCTAssertTrue(run.stdout.hasSuffix("\nok\n"), run.stdout)
            let logits = try SafetensorsFile(path: golden).tensor(named: "logits").floats()
            let tolerance = 1e-5 * max(1, Double(logits.map(abs).max() ?? 0))
            let verify = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle, "--golden", golden, "--tolerance", String(tolerance)])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            XCTAssertTrue(verify.stdout.contains("parity passed"), verify.stdout)
        }
        // The per-channel case ignores the kept layer's modules, and its weights stay float32.
        let config = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/int4-1/config.json"))))
        XCTAssertEqual(config["quantization_config"]?["ignore"], .array(["model.lm_head", "model.transformer.layers.1.self_attn.out_proj",
                                                                         "model.transformer.layers.1.linear1", "model.transformer.layers.1.linear2"].map { .string($0) }))

        // The byte check bites: one nibble of one word changed and compressed-tensors' bytes no longer match.
        let edit = try TestSupport.run(python, ["-c", """
            import sys
            from safetensors.torch import load_file, save_file
            t = load_file(sys.argv[1])
            t["model.transformer.layers.0.linear1.weight_packed"][3, 1] ^= 0x10
            save_file(t, sys.argv[1], metadata={"format": "pt"})
            """, dir + "/int4-0/model.safetensors"])
        XCTAssertEqual(edit.status, 0, edit.stderr)
        let bitten = try TestSupport.run(python, [TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_int4.py").path, dir + "/int4-0", cases[0].source])
        XCTAssertEqual(bitten.status, 1, bitten.stdout + bitten.stderr)
        XCTAssertTrue(bitten.stdout.contains("FAIL  model.transformer.layers.0.linear1.weight_packed is compressed-tensors' own bytes"), bitten.stdout)
    }

    /// The published tokenizer layout (base_tokenizer/ plus MorphBPE files at the top) is kept, and both
    /// AutoTokenizer loads work; the last transformers 4.x loads the AR f32 bundle with the same checks.
    func testPublishedTokenizerLayoutAndTheLastTransformers4() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "transformers", "yaml"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let published = dir + "/published"
        try FileManager.default.createDirectory(atPath: published + "/base_tokenizer", withIntermediateDirectories: true)
        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("trained/tokenizer/" + name), toPath: published + "/base_tokenizer/" + name)
        }
        try writeText("{\"merges_per_word\": 4}\n", to: published + "/morphbpe_config.json")
        try writeText("def segment(word):\n    return [word]\n", to: published + "/morphbpe.py")
        let bundle = dir + "/bundle"
        try convert("trained/arafusion_tiny_ar.pt", bundle, ["--tokenizer", published])
        for name in ["morphbpe_config.json", "morphbpe.py", "tokenizer.json", "base_tokenizer/tokenizer.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: bundle + "/" + name), name)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: bundle + "/morphbpe.py")), try Data(contentsOf: URL(fileURLWithPath: published + "/morphbpe.py")))
        _ = try interop(python, bundle, "trained/arafusion_tiny_ar.pt")

        let t4 = try TestSupport.interopSetting("ARAPACK_TRANSFORMERS4")
        let out = try interop(python, bundle, "trained/arafusion_tiny_ar.pt", environment: ["PYTHONPATH": t4])
        XCTAssertTrue(out.hasPrefix("transformers 4.57.6,"), out)
        XCTAssertTrue(out.contains("ok    logits bit-identical to ARBaseline on the source as float32"), out)
    }

    /// Every code block of the generated card (quick start, the training sampler, generate with a GenerationConfig,
    /// batch inference over padded prompts, perplexity) runs as written on a bundle with 512 positions, in
    /// transformers 5 and 4; the printed perplexity equals the training module's within 1e-4 relative. The model:
    /// the trained twin's weights and tokenizer with its position table grown to 512 rows and the 0.1 dropout the real
    /// runs train with (made here by real PyTorch).
    func testTheCardsExamplesRunAsWrittenOnA512PositionBundle() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "transformers", "yaml"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let source = dir + "/ar512.pt"
        let script = """
            import sys, torch
            ck = torch.load(sys.argv[1], weights_only=True)
            model, config = dict(ck["model"]), dict(ck["config"], max_seq_len=512, dropout=0.1)
            old = model["position_embedding.weight"]
            grown = torch.randn(512, old.shape[1], generator=torch.Generator().manual_seed(0)) * old.std()
            grown[: old.shape[0]] = old
            model["position_embedding.weight"] = grown
            torch.save({"model": model, "config": config, "step": ck.get("step", 0)}, sys.argv[2])
            """
        let made = try TestSupport.run(python, ["-c", script, TestSupport.fixture("trained/arafusion_tiny_ar.pt"), source])
        XCTAssertEqual(made.status, 0, made.stderr)
        let bundle = dir + "/bundle"
        let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, bundle, "--tokenizer", TestSupport.fixture("trained/tokenizer")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let t4 = try TestSupport.interopSetting("ARAPACK_TRANSFORMERS4")
        for environment in [nil, ["PYTHONPATH": t4]] {
            let run = try TestSupport.run(python, [Self.script, bundle, source, "--card"], environment: environment)
            XCTAssertEqual(run.status, 0, run.stdout + run.stderr)
            XCTAssertTrue(run.stdout.hasPrefix(environment == nil ? "transformers 5." : "transformers 4.57.6,"), run.stdout)
            for fragment in ["runs as written", "batch inference) runs as written", "perplexity) runs as written",
                             "ok    the card's perplexity", "ok    a left-padded batch of prompts", "ok    generate uses a key/value cache"] {
                XCTAssertTrue(run.stdout.contains(fragment), "\(fragment): " + run.stdout)
            }
            XCTAssertFalse(run.stdout.contains("FAIL"), run.stdout)
        }
    }
}
