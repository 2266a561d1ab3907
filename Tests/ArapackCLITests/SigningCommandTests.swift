import ArapackFormats
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// `arapack sign`, `convert --sign` and `verify --signature`: the signature's structure, tampering of each kind,
/// wrong keys, hostile signature and key files, and that no key material reaches any output.
/// Keys are made by the `openssl` command line tool.
final class SigningCommandTests: XCTestCase {
    var scratch = ""
    var bundle = ""
    override func setUpWithError() throws {
        scratch = try TestSupport.temporaryDirectory()
        bundle = scratch + "/bundle"
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", scratch + "/key.pem"])
        try openssl(["pkey", "-in", scratch + "/key.pem", "-pubout", "-out", scratch + "/pub.pem"])
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", scratch + "/other.pem"])
        try openssl(["pkey", "-in", scratch + "/other.pem", "-pubout", "-out", scratch + "/other-pub.pem"])
        let r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle, "--tokenizer", TestSupport.fixture("tokenizer/valid"))
        XCTAssertEqual(r.status, 0, r.stderr)
    }
    override func tearDown() { removeTree(scratch) }

    func openssl(_ arguments: [String]) throws {
        let r = try TestSupport.run("/usr/bin/openssl", arguments)
        guard r.status == 0 else { throw NSError(domain: "openssl", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stderr]) }
    }

    func verify(_ signature: String? = nil, key: String? = nil) throws -> TestSupport.ProcessResult {
        try TestSupport.arapack("verify", bundle, "--signature", signature ?? bundle + "/model.sig", "--public-key", key ?? scratch + "/pub.pem")
    }

    /// The statement inside a signature file, decoded with Foundation (not arapack's parser).
    func statement(_ path: String) throws -> [String: Any] {
        let sig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        let envelope = sig["dsseEnvelope"] as! [String: Any]
        return try JSONSerialization.jsonObject(with: Data(base64Encoded: envelope["payload"] as! String)!) as! [String: Any]
    }

    func testSignatureListsEveryFileAndVerifies() throws {
        // Every file, base_tokenizer/ included, but .gitattributes (model_signing leaves git files out by default).
        let files = try BundleFolder.files(bundle).filter { $0 != "model.sig" && $0 != ".gitattributes" }
        XCTAssertTrue(files.contains("base_tokenizer/tokenizer.json") && files.contains("modeling_arafusion.py"), "\(files)")
        var r = try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "signed \(files.count) files of \(bundle): \(bundle)/model.sig (ECDSA P-256, SHA-256)\n")
        let sig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: bundle + "/model.sig"))) as! [String: Any]
        XCTAssertEqual(sig["mediaType"] as? String, "application/vnd.dev.sigstore.bundle.v0.3+json")
        XCTAssertEqual((sig["dsseEnvelope"] as! [String: Any])["payloadType"] as? String, "application/vnd.in-toto+json")
        let s = try statement(bundle + "/model.sig")
        XCTAssertEqual(s["_type"] as? String, "https://in-toto.io/Statement/v1")
        XCTAssertEqual(s["predicateType"] as? String, "https://model_signing/signature/v1.0")
        let predicate = s["predicate"] as! [String: Any]
        let resources = predicate["resources"] as! [[String: String]]
        XCTAssertEqual(resources.map { $0["name"]! }, files.sorted())
        var concatenated: [UInt8] = []
        for r in resources {
            let digest = try SHA256.hex(ofFile: bundle + "/" + r["name"]!)
            XCTAssertEqual(r["digest"], digest)
            concatenated += stride(from: 0, to: 64, by: 2).map { UInt8(digest.dropFirst($0).prefix(2), radix: 16)! }
        }
        let subject = (s["subject"] as! [[String: Any]])[0]
        XCTAssertEqual(subject["name"] as? String, "bundle")
        XCTAssertEqual((subject["digest"] as! [String: String])["sha256"], concatenated.withUnsafeBytes { SHA256.hex(of: $0) })
        let provenance = predicate["arapack"] as! [String: Any]
        let manifest = try TestSupport.loadJSON(bundle + "/manifest.json")
        XCTAssertEqual((provenance["source"] as! [String: Any])["sha256"] as? String, manifest["source"]?["sha256"]?.stringValue)

        r = try verify()
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ok    signature: \(files.count) files of bundle signed under \(scratch)/pub.pem"), r.stdout)
        XCTAssertTrue(r.stdout.contains("  source    ar_gelu.pt (torch), sha256 \(manifest["source"]!["sha256"]!.stringValue!), step 100"), r.stdout)
        XCTAssertEqual(try directoryEntries(bundle).filter { $0.contains("tmp") }, [], "the signature was written atomically")
    }

    func testTamperingOfEachKindIsExitOneNamingTheFile() throws {
        XCTAssertEqual(try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem").status, 0)
        let weights = bundle + "/model.safetensors"
        let original = try Data(contentsOf: URL(fileURLWithPath: weights))
        var changed = original
        changed[changed.count - 3] ^= 1
        try changed.write(to: URL(fileURLWithPath: weights))
        var r = try verify()
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("FAIL  signature: model.safetensors differs from the signed file"), r.stdout)
        try original.write(to: URL(fileURLWithPath: weights))
        XCTAssertEqual(try verify().status, 0)

        try writeText("{}", to: bundle + "/extra.json")
        r = try verify()
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("extra.json is not covered by the signature (added after signing)"), r.stdout)
        removeTree(bundle + "/extra.json")

        let card = try Data(contentsOf: URL(fileURLWithPath: bundle + "/training_metadata.json"))
        removeTree(bundle + "/training_metadata.json")
        r = try verify()
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("training_metadata.json is signed but missing"), r.stdout)
        try card.write(to: URL(fileURLWithPath: bundle + "/training_metadata.json"))

        r = try verify(key: scratch + "/other-pub.pem")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("the signature was made with another key"), r.stdout)

        // A forger edits a file and the statement to match, keeping the old signature: the signature no longer verifies.
        let path = bundle + "/model.sig"
        var sig = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var envelope = sig["dsseEnvelope"] as! [String: Any]
        let payload = String(decoding: Data(base64Encoded: envelope["payload"] as! String)!, as: UTF8.self)
        let digest = try SHA256.hex(ofFile: bundle + "/training_metadata.json")
        try writeText("{\"step\": 999999}\n", to: bundle + "/training_metadata.json")
        let forged = payload.replacingOccurrences(of: digest, with: try SHA256.hex(ofFile: bundle + "/training_metadata.json"))
        XCTAssertNotEqual(forged, payload)
        envelope["payload"] = Data(forged.utf8).base64EncodedString()
        sig["dsseEnvelope"] = envelope
        try JSONSerialization.data(withJSONObject: sig).write(to: URL(fileURLWithPath: path))
        r = try verify()
        XCTAssertTrue([1, 2].contains(r.status), r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("the signature does not verify") || r.stderr.contains("does not match the resources"), r.stdout + r.stderr)
    }

    /// Authenticate, then parse: with a signature, one byte changed in any file, where a parser would choke on it
    /// (the safetensors header, a JSON file, the card, the wrapper), is exit 1 naming that file as differing from
    /// the signed one; no structural check runs on the unauthenticated bytes.
    func testEveryFileKindIsAuthenticatedBeforeAnyParserReadsIt() throws {
        XCTAssertEqual(try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem").status, 0)
        // (file, the byte to change: a structural one, so that a parser reading it first would fail another way)
        let kinds: [(String, String)] = [("model.safetensors", "{"), ("config.json", "{"), ("manifest.json", "{"), ("tokenizer.json", "{"),
                                         ("base_tokenizer/tokenizer_config.json", "{"), ("generation_config.json", "{"),
                                         ("training_metadata.json", "{"), ("README.md", "-"), ("modeling_arafusion.py", "i")]
        for (name, byte) in kinds {
            let path = bundle + "/" + name
            let original = try Data(contentsOf: URL(fileURLWithPath: path))
            var changed = original
            let at = try XCTUnwrap(changed.firstIndex(of: byte.utf8.first!), name)
            changed[at] = UInt8(ascii: "#")
            try changed.write(to: URL(fileURLWithPath: path))
            let r = try verify()
            XCTAssertEqual(r.status, 1, name + ": " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("FAIL  signature: \(name) differs from the signed file"), name + ": " + r.stdout)
            XCTAssertTrue(r.stderr.hasPrefix("arapack verify: \(bundle): signature: \(name) differs from the signed file"), name + ": " + r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            let checks = r.stdout.split(separator: "\n").filter { $0.hasPrefix("ok ") || $0.hasPrefix("FAIL ") }
            XCTAssertEqual(checks.count, 1, name + ": a structural check ran on unauthenticated bytes: " + r.stdout)
            try original.write(to: URL(fileURLWithPath: path))
        }
        XCTAssertEqual(try verify().status, 0)
    }

    func testHostileSignatureFilesAreExitTwo() throws {
        XCTAssertEqual(try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem").status, 0)
        let good = try String(contentsOfFile: bundle + "/model.sig", encoding: .utf8)
        let cases: [(String, String)] = [
            ("not json", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (good.replacingOccurrences(of: "bundle.v0.3+json", with: "bundle.v0.1+json"), "mediaType"),
            (good.replacingOccurrences(of: "\"sig\":\"", with: "\"sig\":\"!!"), "not canonical base64"),
            (good.replacingOccurrences(of: "\"payloadType\":\"application/vnd.in-toto+json\"", with: "\"payloadType\":\"text/plain\""), "payloadType"),
            (String(repeating: "[", count: 100_000), "not valid JSON"),
        ]
        for (i, (text, fragment)) in cases.enumerated() {
            let path = scratch + "/hostile\(i).sig"
            try writeText(text, to: path)
            let r = try verify(path)
            XCTAssertEqual(r.status, 2, "case \(i): " + r.stdout + r.stderr)
            XCTAssertTrue(r.stderr.contains(fragment), "case \(i): " + r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        mkfifo(scratch + "/fifo.sig", 0o600)
        let r = try verify(scratch + "/fifo.sig")
        XCTAssertEqual(r.status, 2, "a FIFO is refused, not waited on")
    }

    func testKeysThatCannotSignAreExitTwoAndNoKeyMaterialIsPrinted() throws {
        try writeText("secret pass\n", to: scratch + "/password")
        try openssl(["pkey", "-in", scratch + "/key.pem", "-aes256", "-passout", "file:" + scratch + "/password", "-out", scratch + "/encrypted.pem"])
        try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", scratch + "/rsa.pem"])
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", scratch + "/p384.pem"])
        try writeText("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", to: scratch + "/garbage.pem")
        try writeText("wrong\n", to: scratch + "/wrong-password")
        let cases: [([String], String)] = [
            (["--key", scratch + "/encrypted.pem"], "the private key is encrypted; pass --key-password-file"),
            (["--key", scratch + "/encrypted.pem", "--key-password-file", scratch + "/wrong-password"], "could not be decrypted"),
            (["--key", scratch + "/rsa.pem"], "an EC P-256 (prime256v1) key is required, found an RSA key"),
            (["--key", scratch + "/p384.pem"], "found an EC key on curve secp384r1"),
            (["--key", scratch + "/garbage.pem"], "not a PEM private key"),
            (["--key", scratch + "/pub.pem"], "not a PEM private key"),
            (["--key", scratch + "/missing.pem"], "missing.pem"),
        ]
        let keyBody = try String(contentsOfFile: scratch + "/key.pem", encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("-----") }
        for (options, fragment) in cases {
            let r = try TestSupport.run(TestSupport.arapackBinary, ["sign", bundle] + options)
            XCTAssertEqual(r.status, 2, "\(options): " + r.stderr)
            XCTAssertTrue(r.stderr.contains(fragment), "\(options): " + r.stderr)
            XCTAssertFalse(pathExists(bundle + "/model.sig"))
            for line in keyBody { XCTAssertFalse(r.stdout.contains(line) || r.stderr.contains(line)) }
        }
        var r = try TestSupport.arapack("sign", bundle, "--key", scratch + "/encrypted.pem", "--key-password-file", scratch + "/password",
                                        "--signature", scratch + "/outside.sig")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(pathExists(bundle + "/model.sig"))
        r = try verify(scratch + "/outside.sig")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        r = try TestSupport.arapack("verify", bundle, "--signature", scratch + "/outside.sig", "--public-key", scratch + "/key.pem")
        XCTAssertEqual(r.status, 2, "a private key where the public one belongs")
        for line in keyBody { XCTAssertFalse(r.stdout.contains(line) || r.stderr.contains(line)) }
    }

    func testFoldersWithSymlinksOrFIFOsAreNotSigned() throws {
        symlink("/etc/passwd", bundle + "/link")
        var r = try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("link: a symlink"), r.stderr)
        unlink(bundle + "/link")
        mkfifo(bundle + "/pipe", 0o600)
        r = try TestSupport.arapack("sign", bundle, "--key", scratch + "/key.pem")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("pipe: not a regular file"), r.stderr)
        XCTAssertFalse(pathExists(bundle + "/model.sig"))
    }

    func testConvertSignsBeforeTheBundleMovesIntoPlace() throws {
        let dst = scratch + "/signed"
        var r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_relu.pt"), dst, "--to", "gpt2", "--dtype", "bf16",
                                        "--parity", "--archive", "--sign", scratch + "/key.pem")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(pathExists(dst + "/model.sig"))
        r = try TestSupport.arapack("verify", dst, "--signature", dst + "/model.sig", "--public-key", scratch + "/pub.pem")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("options   to=gpt2 dtype=bf16"), r.stdout)
        XCTAssertTrue(r.stdout.contains("  parity    passed (bf16,"), r.stdout)
        XCTAssertEqual((try statement(dst + "/model.sig")["subject"] as! [[String: Any]])[0]["name"] as? String, "AraFusion-AR-22K",
                       "the model's name is the release's (family and size, without --repo-id), not a folder's")
        r = try TestSupport.arapack("verify", dst + ".tar.zst")
        XCTAssertEqual(r.status, 0, "the archive carries model.sig, which the manifest does not list: " + r.stdout)
        // A key that cannot sign stops the conversion before anything is written.
        r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_relu.pt"), scratch + "/unsigned", "--sign", scratch + "/pub.pem")
        XCTAssertEqual(r.status, 2)
        XCTAssertFalse(pathExists(scratch + "/unsigned"))
    }
}
