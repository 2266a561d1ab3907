import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Signatures interoperate with the real `model_signing` package (scripts/interop_signing.py): it accepts what
/// `arapack sign` writes and rejects it after a byte changes, a file is added or removed, or under another key;
/// `arapack verify` accepts what `model_signing sign key` writes and rejects it after tampering.
/// Needs `ARAPACK_PYTHON` with model_signing (CI fails when it is missing).
final class SigningInteropTests: XCTestCase {
    func testModelSigningAndArapackAcceptEachOthersSignatures() throws {
        let python = try TestSupport.interopPython(importing: ["model_signing"])
        let dir = try TestSupport.temporaryDirectory()
        defer { removeTree(dir) }
        for (name, curve) in [("key", "P-256"), ("other", "P-256")] {
            XCTAssertEqual(try TestSupport.run("/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:" + curve,
                                                                    "-out", "\(dir)/\(name).pem"]).status, 0)
            XCTAssertEqual(try TestSupport.run("/usr/bin/openssl", ["pkey", "-in", "\(dir)/\(name).pem", "-pubout", "-out", "\(dir)/\(name)-pub.pem"]).status, 0)
        }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_signing.py").path
        for (i, options) in [["--to", "gpt2", "--tokenizer", TestSupport.fixture("tokenizer/valid")], ["--max-shard-size", "30kB"]].enumerated() {
            let bundle = "\(dir)/bundle\(i)"
            XCTAssertEqual(try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle] + options).status, 0)
            let r = try TestSupport.run(python, [script, TestSupport.arapackBinary, bundle, dir + "/key.pem", dir + "/key-pub.pem", dir + "/other-pub.pem"])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout)
            XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        }
        // A single file: a GGUF, signed by arapack sign and by model_signing alike (one resource, ".").
        let gguf = dir + "/model.gguf"
        XCTAssertEqual(try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture("trained/arafusion_tiny_ar.pt"), gguf, "--to", "gguf",
                                                                       "--tokenizer", TestSupport.fixture("gguf/bytelevel")]).status, 0)
        let r = try TestSupport.run(python, [script, TestSupport.arapackBinary, gguf, dir + "/key.pem", dir + "/key-pub.pem", dir + "/other-pub.pem"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ok    arapack verify rejects model_signing's signature after tampering"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout)
    }
}
