import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// `--to gpt2` bundles load in stock transformers with no remote code (scripts/interop_gpt2.py): GPT2LMHeadModel,
/// no missing or unexpected keys, logits within 1e-4 of ARBaseline on the source, greedy generate equal to a greedy
/// loop over ARBaseline, top-p sampling, AutoTokenizer, and the model card's quick-start code run as written.
/// Needs `ARAPACK_PYTHON` with torch and transformers (CI fails when they are missing).
final class GPT2InteropTests: XCTestCase {
    func testStockTransformersLoadsGPT2BundlesAndComputesTheSourceModel() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "transformers"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_gpt2.py").path
        let cases: [(source: String, options: [String])] = [
            ("golden/ar_gelu.pt", ["--tokenizer", TestSupport.fixture("tokenizer/valid")]),
            ("golden/ar_relu.pt", []),
            ("golden/ar_gelu.pt", ["--dtype", "bf16"]),
            ("golden/ar_long.pt", ["--dtype", "f16", "--max-shard-size", "100kB"]),
            ("golden/ar_odd.pt", ["--max-shard-size", "20kB"]),
            ("trained/arafusion_tiny_ar.pt", ["--tokenizer", TestSupport.fixture("trained/tokenizer")]),
        ]
        for (i, c) in cases.enumerated() {
            let bundle = dir + "/gpt2-\(i)"
            let convert = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture(c.source), bundle, "--to", "gpt2"] + c.options)
            XCTAssertEqual(convert.status, 0, convert.stderr)
            let r = try TestSupport.run(python, [script, bundle, TestSupport.fixture(c.source), "--card"])
            XCTAssertEqual(r.status, 0, "\(c.source) \(c.options): " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout)
            XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        }

        // The checks bite: a config whose GPT-2 computes the tanh GELU (gelu_new) loads but fails the logits.
        let broken = dir + "/gpt2-1"
        let config = try String(contentsOfFile: broken + "/config.json", encoding: .utf8)
        try writeText(config.replacingOccurrences(of: "\"activation_function\": \"relu\"", with: "\"activation_function\": \"gelu_new\""),
                      to: broken + "/config.json")
        let r = try TestSupport.run(python, [script, broken, TestSupport.fixture("golden/ar_relu.pt")])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("FAIL  logits: max |ARBaseline - GPT2LMHeadModel|"), r.stdout)
    }
}
