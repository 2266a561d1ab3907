import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Bundles arapack writes load in PyTorch through the real `safetensors` package into ARBaseline and give
/// logits identical to the source checkpoint's; the tokenizer files load with HF `tokenizers`.
/// Runs where `ARAPACK_PYTHON` has torch, safetensors and tokenizers.
final class BundleInteropTests: XCTestCase {
    func testBundlesLoadInPyTorchWithIdenticalLogits() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "safetensors", "tokenizers"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        try writeText("{\"n_heads\": 4}", to: dir + "/heads.json")
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_bundle.py").path
        let cases: [(source: String, options: [String], exact: Bool)] = [
            ("torch/valid/training_dict.pt", ["--tokenizer", TestSupport.fixture("tokenizer/valid")], true),
            ("torch/valid/fsdp_full_state_dict.pt", [], true),
            ("torch/valid/ddp_compile_stacked_prefix.pt", ["--config", dir + "/heads.json"], true),
            ("release/valid/mdlm_relu.pt", ["--max-shard-size", "50kB"], true),
            ("release/valid/untied.pt", ["--allow-untied"], true),
            ("torch/valid/training_dict.pt", ["--dtype", "bf16"], false),
        ]
        for (i, c) in cases.enumerated() {
            let source = TestSupport.fixture(c.source)
            let bundle = dir + "/b\(i)"
            let convert = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, bundle] + c.options)
            XCTAssertEqual(convert.status, 0, convert.stderr)
            let r = try TestSupport.run(python, [script, bundle, source] + (c.exact ? ["--exact"] : []))
            XCTAssertEqual(r.status, 0, "\(c.source) \(c.options): " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.hasSuffix("ok\n"), r.stdout)
            if c.exact { XCTAssertTrue(r.stdout.contains("max |source - bundle| = 0.0 "), r.stdout) }
        }
        // The exact comparison bites: a bf16 bundle's logits are not bit-identical to the f32 source's.
        let r = try TestSupport.run(python, [script, dir + "/b5", TestSupport.fixture("torch/valid/training_dict.pt"), "--exact"])
        XCTAssertEqual(r.status, 1, r.stdout)
    }
}
