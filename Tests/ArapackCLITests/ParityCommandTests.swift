import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// `verify --parity`, `verify --golden`, `convert --parity` and `run` from the command line.
final class ParityCommandTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let source = TestSupport.fixture("golden/ar_odd.pt")
    let golden = TestSupport.fixture("golden/ar_odd.golden.safetensors")

    func testVerifyParityAndGoldenWithReport() throws {
        let dst = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", source, dst, "--archive").status, 0)
        var reports: [String] = []
        for target in [dst, dst + ".tar.zst"] {
            let report = scratch + "/report\(reports.count).json"
            let r = try TestSupport.arapack("verify", target, "--parity", "--against", source, "--golden", golden, "--probes", "3", "--seq-len", "7", "--report", report)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("probes       3 × 7 tokens, seed 0"), r.stdout)
            XCTAssertTrue(r.stdout.contains("dtype        float32 (thresholds: lossless)"), r.stdout)
            let doc = try TestSupport.loadJSON(report)
            XCTAssertEqual(doc["passed"], .bool(true))
            XCTAssertEqual(doc["parity"]?.elements?.count, 2)
            XCTAssertEqual(doc["parity"]?.elements?.first?["metrics"]?["max_abs_diff"]?.doubleValue, 0)
            reports.append(report)
        }
        try TestSupport.validateAgainstSchema("verify-report.schema.json", reports)
    }

    func testVerifyParityFailsNamingThePerturbedTensor() throws {
        let dst = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", source, dst).status, 0)
        let st = try SafetensorsFile(path: dst + "/model.safetensors")
        let offset = off_t(st.header.dataStart + (try st.entry(named: "model.ln_f.bias")).dataRange.lowerBound)
        let fd = open(dst + "/model.safetensors", O_RDWR)
        var bits: UInt32 = 0
        pread(fd, &bits, 4, offset)
        bits ^= 1
        pwrite(fd, &bits, 4, offset)
        close(fd)
        let report = scratch + "/report.json"
        let r = try TestSupport.arapack("verify", dst, "--parity", "--against", source, "--report", report)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("differs      model.ln_f.bias (1 element)"), r.stdout)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("manifest: model.safetensors has SHA-256"), "the structural check fails first: \(r.stderr)")
        let doc = try TestSupport.loadJSON(report)
        XCTAssertEqual(doc["passed"], .bool(false))
        XCTAssertEqual(doc["parity"]?.elements?.first?["differing_tensors"], .array([.string("model.ln_f.bias (1 element)")]))
        try TestSupport.validateAgainstSchema("verify-report.schema.json", [report])
        // A lossless run whose limit a flag overrode (here tighter than the difference) still names the tensors.
        let o = try TestSupport.arapack("verify", dst, "--parity", "--against", source, "--max-abs-diff", "1e-12")
        XCTAssertEqual(o.status, 1)
        XCTAssertTrue(o.stdout.contains("(thresholds: lossless (overridden))"), o.stdout)
        XCTAssertTrue(o.stdout.contains("differs      model.ln_f.bias (1 element)"), o.stdout)
    }

    func testConvertParityGuardsTheDestination() throws {
        var r = try TestSupport.arapack("convert", source, scratch + "/ok", "--dtype", "bf16", "--parity")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("dtype        bfloat16 (thresholds: bf16)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("parity passed"), r.stdout)
        r = try TestSupport.arapack("convert", source, scratch + "/strict", "--dtype", "bf16", "--parity", "--max-mean-kl", "1e-12")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("parity against \(source) failed: mean KL"), r.stderr)
        XCTAssertTrue(r.stderr.hasSuffix("nothing written\n"), r.stderr)
        XCTAssertEqual(try directoryEntries(scratch), ["ok"], "a failed parity leaves no DST and no temporaries")
        XCTAssertEqual(try TestSupport.arapack("convert", source, scratch + "/t.pt", "--to", "torch", "--parity").status, 64)
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/ok", "--parity").status, 64, "--parity needs --against")
    }

    func testInt8ConversionOfTheTrainedModelPassesParityOnHeldOutText() throws {
        let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        let r = try TestSupport.arapack("convert", trained, scratch + "/int8", "--dtype", "int8", "--parity",
                                        "--probe-ids", TestSupport.fixture("trained/heldout.safetensors"),
                                        "--tokenizer", TestSupport.fixture("trained/tokenizer"))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("probes       64 × 32 tokens\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("dtype        int8 (thresholds: int8)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("model.transformer.layers.1.linear2.weight "), "the per-tensor report is printed: \(r.stdout)")
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/int8").status, 0)
    }

    /// int4 on the trained twin: parity on held-out text within the int4 limits, the card and the manifest say int4, verify and
    /// eval read it; the default groups of 128 do not divide its 64 columns (exit 2, nothing written); flags that do not
    /// apply are usage errors.
    func testInt4ConversionOfTheTrainedModel() throws {
        let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt"), shards = TestSupport.fixture("tokens/heldout_u32.npy")
        let bundle = scratch + "/int4"
        var r = try TestSupport.arapack("convert", trained, bundle, "--dtype", "int4", "--int4-group-size", "32", "--parity", "--tokens", shards,
                                        "--tokenizer", TestSupport.fixture("trained/tokenizer"))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("dtype        int4 (thresholds: int4)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("model.transformer.layers.1.linear2.weight "), "the per-tensor report is printed: \(r.stdout)")
        let card = try String(contentsOfFile: bundle + "/README.md", encoding: .utf8)
        for line in ["- compressed-tensors\n- int4\n", "# int4 weights in the compressed-tensors format: pip install compressed-tensors",
                     "int4 symmetric, groups of 32, for the nn.Linear weights", "## Quality on the model's own data"] {
            XCTAssertTrue(card.contains(line), line)
        }
        XCTAssertEqual(try TestSupport.loadJSON(bundle + "/manifest.json")["dtype"]?.stringValue, "int4")
        r = try TestSupport.arapack("verify", bundle, "--parity", "--against", trained, "--tokens", shards)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("dtype        int4 (thresholds: int4)"), r.stdout)
        r = try TestSupport.arapack("eval", bundle, "--tokens", shards, "--against", trained)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("Same top p"), r.stdout)

        r = try TestSupport.arapack("convert", trained, scratch + "/default", "--dtype", "int4")
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--int4-group-size 128 does not divide the 64 columns"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/default"))
        for (options, message) in [
            (["--dtype", "int4", "--int4-group-size", "12"], "--int4-group-size must be 0 (per channel) or a positive multiple of 8"),
            (["--dtype", "int8", "--int4-group-size", "32"], "--int4-group-size applies to --dtype int4"),
            (["--dtype", "int4", "--int8-group-size", "32"], "--int8-group-size applies to --dtype int8"),
            (["--dtype", "bf16", "--keep", "*"], "--keep applies to --dtype int8 and int4"),
            (["--dtype", "int4", "--to", "gpt2"], "--dtype int4 is not written in the GPT-2 layout"),
            (["--dtype", "int4", "--to", "gguf"], "--dtype int4 writes bundles only"),
        ] {
            r = try TestSupport.run(TestSupport.arapackBinary, ["convert", trained, scratch + "/x"] + options)
            XCTAssertEqual(r.status, 64, "\(options): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(options): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/x"))
    }

    func testRunPrintsTopTokensAndAChecksumEqualForCheckpointAndBundle() throws {
        let dst = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", source, dst).status, 0)
        let a = try TestSupport.arapack("run", source, "--ids", "1,2,3,4", "--top-k", "3")
        try writeText("1 2\n3, 4\n", to: scratch + "/ids.txt")
        let b = try TestSupport.arapack("run", dst, "--ids-file", scratch + "/ids.txt", "--top-k", "3")
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(b.status, 0, b.stderr)
        func checksum(_ s: String) -> Substring? { s.split(separator: "\n").first { $0.hasPrefix("checksum") }?.split(separator: " ").last }
        XCTAssertNotNil(checksum(a.stdout))
        XCTAssertEqual(checksum(a.stdout), checksum(b.stdout), "bit-identical logits, equal checksums")
        XCTAssertEqual(a.stdout.split(separator: "\n").filter { $0.hasPrefix("          ") }.count, 3)
        // On the golden file's first probe, the top token is PyTorch's arg-max at the last position.
        let file = try SafetensorsFile(path: golden)
        let ids = try file.tensor(named: "ids").integers(as: Int64.self), logits = try file.tensor(named: "logits").floats()
        let length = 20, vocab = 100
        let last = Array(logits[((length - 1) * vocab)..<(length * vocab)])
        let expected = last.indices.max { last[$0] < last[$1] }!
        let top = try TestSupport.arapack("run", dst, "--ids", ids[0..<length].map(String.init).joined(separator: ","), "--top-k", "1")
        let row = top.stdout.split(separator: "\n").first { $0.hasPrefix("          ") }!.split(separator: " ")
        XCTAssertEqual(row[0], "1")
        XCTAssertEqual(Int(row[1]), expected, top.stdout)
        let bad = try TestSupport.arapack("run", dst, "--ids", "1,x")
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("\"x\" is not a token id"), bad.stderr)
        XCTAssertEqual(try TestSupport.arapack("run", dst, "--ids", "100").status, 2, "outside the vocabulary of 100")
        XCTAssertEqual(try TestSupport.arapack("run", dst).status, 64)
    }
}
