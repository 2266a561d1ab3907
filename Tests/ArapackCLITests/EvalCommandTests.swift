import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// `arapack eval` on the trained twin's held-out shards (Fixtures/tokens, written by numpy and megatron-core): the
/// same figures from every shard form, parts that merge into the whole run bit for bit, the selection flags, and
/// every malformed shard refused with its file, field and offset.
final class EvalCommandTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
    /// Every form of the same 276 × 32 ids, with the flags each needs.
    let forms: [[String]] = [
        [TestSupport.fixture("tokens/heldout_u32.npy")],
        [TestSupport.fixture("tokens/heldout_u16.npy")],
        [TestSupport.fixture("tokens/heldout_stream_i8be.npy")],
        [TestSupport.fixture("tokens/heldout.u32"), "--token-dtype", "u32", "--seq-len", "32"],
        [TestSupport.fixture("tokens/megatron")],
        [TestSupport.fixture("tokens/megatron/heldout.idx")],
    ]

    func eval(_ args: [String]) throws -> JSONValue {
        let r = try TestSupport.run(TestSupport.arapackBinary, ["eval"] + args + ["--json"])
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
        return try JSONParser.parse(Array(r.stdout.utf8))
    }

    /// The statistics of a report (what must agree across shard forms, whose names and digests differ).
    func figures(_ report: JSONValue) -> [JSONValue?] {
        ["tokens", "sequences", "loss", "perplexity", "comparison"].map { report[$0] }
    }

    func testEveryShardFormGivesTheSameBits() throws {
        let bundle = scratch + "/bf16"
        XCTAssertEqual(try TestSupport.arapack("convert", trained, bundle, "--dtype", "bf16").status, 0)
        let alone = try forms.map { try figures(eval([trained, "--tokens"] + $0.prefix(1) + $0.dropFirst())) }
        let compared = try forms.map { try figures(eval([bundle, "--tokens"] + $0.prefix(1) + $0.dropFirst() + ["--against", trained])) }
        for i in 1..<forms.count {
            XCTAssertEqual(alone[i], alone[0], "\(forms[i])")
            XCTAssertEqual(compared[i], compared[0], "\(forms[i])")
        }
        let report = try eval([trained, "--tokens", TestSupport.fixture("tokens/heldout_u32.npy")])
        XCTAssertEqual(report["tokens"]?.intValue, 276 * 31, "every next-token position of every row")
        XCTAssertEqual(report["sequences"]?.intValue, 276)
        // The twin's held-out loss is what its training run measured on the same text (3.6193 over the stream,
        // which also scores each row's last position from the next row's first id).
        let loss = try XCTUnwrap(report["loss"]?["value"]?.doubleValue)
        XCTAssertEqual(loss, 3.62, accuracy: 0.15)
        XCTAssertEqual(report["perplexity"]?["value"]?.doubleValue ?? 0, Foundation.exp(loss), accuracy: 1e-9 * Foundation.exp(loss))
        XCTAssertEqual(report["comparison"], .null)
        let c = try XCTUnwrap(compared[0][4])
        XCTAssertGreaterThan(c["kld"]?["value"]?.doubleValue ?? 0, 0)
        XCTAssertLessThan(c["kld"]?["value"]?.doubleValue ?? 1, 1e-2)
        XCTAssertLessThanOrEqual(c["same_top_count"]?.intValue ?? .max, 276 * 31)
        let p = c["kld_percentiles"]
        let order = ["max", "99.9%", "99%", "95%", "90%", "median", "10%", "5%", "1%", "0.1%", "min"].map { p?[$0]?.doubleValue ?? .nan }
        XCTAssertEqual(order, order.sorted(by: >), "percentiles fall from max to min")
        try write(report.serialized(pretty: true), scratch + "/alone.json")
        let r = try TestSupport.run(TestSupport.arapackBinary, ["eval", bundle, "--tokens", TestSupport.fixture("tokens/megatron"), "--against", trained,
                                                               "--report", scratch + "/compared.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("====== KL divergence statistics ======\nMean    KLD: "), r.stdout)
        XCTAssertTrue(r.stdout.contains("\nSame top p: "), r.stdout)
        try TestSupport.validateAgainstSchema("eval-report.schema.json", [scratch + "/alone.json", scratch + "/compared.json"])
    }

    /// The report has the same bits whatever instruction set the kernels use and however many threads share them.
    func testTheSameBitsOnEveryInstructionSetAndThreadCount() throws {
        let gguf = scratch + "/q8_0.gguf"
        XCTAssertEqual(try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--dtype", "q8_0", "--tokenizer", TestSupport.fixture("gguf/bytelevel")).status, 0)
        let args = ["eval", gguf, "--tokens", TestSupport.fixture("tokens/heldout_u16.npy"), "--against", trained, "--sequences", "40", "--json"]
        var reports: [String] = []
        for env in [[:], ["ARAPACK_ISA": "avx2"], ["ARAPACK_ISA": "generic", "ARAPACK_THREADS": "1"], ["ARAPACK_THREADS": "3"]] {
            let r = try TestSupport.run(TestSupport.arapackBinary, args, environment: env)
            XCTAssertEqual(r.status, 0, "\(env): \(r.stderr)")
            reports.append(r.stdout)
        }
        XCTAssertEqual(Set(reports).count, 1, "one report whatever the kernels and threads")
    }

    /// --shard I/N parts merge into the report one run writes, byte for byte, whatever order the parts come in.
    func testPartsMergeIntoTheWholeRunBitForBit() throws {
        let bundle = scratch + "/int8"
        XCTAssertEqual(try TestSupport.arapack("convert", trained, bundle, "--dtype", "int8").status, 0)
        let base = [bundle, "--tokens", TestSupport.fixture("tokens/heldout_u32.npy"), "--against", trained, "--sequences", "50", "--seed", "3"]
        var r = try TestSupport.run(TestSupport.arapackBinary, ["eval"] + base + ["--report", scratch + "/whole.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for i in 1...3 {
            r = try TestSupport.run(TestSupport.arapackBinary, ["eval"] + base + ["--shard", "\(i)/3", "--report", scratch + "/part\(i).json"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        r = try TestSupport.arapack("eval", "--merge", scratch + "/part3.json", scratch + "/part1.json", scratch + "/part2.json", "--report", scratch + "/merged.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: scratch + "/merged.json")), try Data(contentsOf: URL(fileURLWithPath: scratch + "/whole.json")))
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/whole.json")["sequences"]?.intValue, 50)
        // A missing part, or parts of different runs, are refused.
        r = try TestSupport.arapack("eval", "--merge", scratch + "/part1.json", scratch + "/part2.json")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("a run of 3 parts needs each of 1/3 … 3/3 once"), r.stderr)
        r = try TestSupport.run(TestSupport.arapackBinary, ["eval"] + base.dropLast(2) + ["--seed", "4", "--shard", "2/3", "--report", scratch + "/other.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try TestSupport.arapack("eval", "--merge", scratch + "/part1.json", scratch + "/other.json", scratch + "/part3.json")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("its selection differs"), r.stderr)
        // The same seed picks the same sequences; another seed others.
        let a = try eval(base), b = try eval(base.dropLast(2) + ["--seed", "4"])
        XCTAssertEqual(a["comparison"], try TestSupport.loadJSON(scratch + "/whole.json")["comparison"])
        XCTAssertNotEqual(a["comparison"], b["comparison"])
    }

    func testUsageAndModelKinds() throws {
        for args in [["eval", trained], ["eval", trained, "--tokens", "x", "--token-dtype", "u8"], ["eval", trained, "--tokens", "x", "--shard", "4/3"],
                     ["eval", trained, "--tokens", "x", "--shard", "1/3"], ["eval", "--merge", "a.json", "--against", trained]] {
            XCTAssertEqual(try TestSupport.run(TestSupport.arapackBinary, args).status, 64, "\(args)")
        }
        // A raw file without its dtype, and an MDLM model alone, are refused with the reason.
        var r = try TestSupport.arapack("eval", trained, "--tokens", TestSupport.fixture("tokens/heldout.u32"))
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("a raw memmap file needs --token-dtype"), r.stderr)
        let mdlm = TestSupport.fixture("golden/mdlm_gelu.pt")
        let ids = scratch + "/ids.npy"
        try write(npy(rows: 4, length: 8, vocab: 128), ids)
        r = try TestSupport.arapack("eval", mdlm, "--tokens", ids)
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("a bidirectional (MDLM) model has no next-token loss"), r.stderr)
        let bf16 = scratch + "/mdlm-bf16"
        XCTAssertEqual(try TestSupport.arapack("convert", mdlm, bf16, "--dtype", "bf16").status, 0)
        let report = try eval([bf16, "--tokens", ids, "--against", mdlm])
        XCTAssertEqual(report["tokens"]?.intValue, 32, "every position of the given ids")
        XCTAssertEqual(report["loss"], .null)
        XCTAssertEqual(report["comparison"]?["delta_p"], .null)
        XCTAssertNotNil(report["comparison"]?["kld"]?["value"]?.doubleValue)
    }

    /// Every malformed shard of Fixtures/tokens/hostile.json: exit 2, one line naming the file and what is wrong.
    func testEveryMalformedShardExitsTwoNamingTheProblem() throws {
        let rows = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("tokens/hostile.json")).members)
        XCTAssertEqual(rows.count, 18)
        for row in rows {
            let file = TestSupport.fixture("tokens/hostile/" + row.key)
            let r = try TestSupport.arapack("eval", trained, "--tokens", file)
            XCTAssertEqual(r.status, 2, "\(row.key): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("arapack eval: error: \(file): "), r.stderr)
            XCTAssertTrue(r.stderr.contains(row.value.stringValue!), "\(row.key): expected \"\(row.value.stringValue!)\" in: \(r.stderr)")
        }
    }

    /// `--tokens` puts real data in the parity verdict: the probes are the shards' first sequences, the report, the
    /// manifest and the card give the release's quality on them and name the data (with the SHA-256 of each shard);
    /// the figures are eval's on the same sequences, bit for bit. Without it, the card says the probes were random.
    func testParityOnRealData() throws {
        let shards = TestSupport.fixture("tokens/heldout_u32.npy")
        let bundle = scratch + "/int8"
        var r = try TestSupport.arapack("convert", trained, bundle, "--dtype", "int8", "--parity", "--tokens", shards)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("probes       8 × 32 tokens of the given data\n"), r.stdout)
        let card = try String(contentsOfFile: bundle + "/README.md", encoding: .utf8)
        XCTAssertTrue(card.contains("## Quality on the model's own data"), card)
        XCTAssertTrue(card.contains("| heldout_u32.npy | \(try fileSize(shards)) | `\(try SHA256.hex(ofFile: shards))` |"), card)
        XCTAssertFalse(card.contains("random token ids"))
        let data = try XCTUnwrap(TestSupport.loadJSON(bundle + "/manifest.json")["parity"]?["data"])
        XCTAssertEqual(data["tokens"]?.intValue, 8 * 31)
        let same = try eval([bundle, "--tokens", shards, "--against", trained, "--sequences", "8"])
        XCTAssertEqual(data["mean_kl"]?.doubleValue, same["comparison"]?["kld"]?["value"]?.doubleValue)
        XCTAssertEqual(data["perplexity_release"]?.doubleValue, same["perplexity"]?["value"]?.doubleValue)
        XCTAssertEqual(data["perplexity_source"]?.doubleValue, same["comparison"]?["reference_perplexity"]?["value"]?.doubleValue)
        r = try TestSupport.arapack("verify", bundle, "--parity", "--against", trained, "--tokens", TestSupport.fixture("tokens/megatron"),
                                    "--probes", "20", "--report", scratch + "/report.json")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/report.json")["parity"]?.elements?.first?["data"]?["sequences"]?.intValue, 20)
        try TestSupport.validateAgainstSchema("verify-report.schema.json", [scratch + "/report.json"])
        XCTAssertEqual(try TestSupport.arapack("convert", trained, scratch + "/random", "--dtype", "int8", "--parity").status, 0)
        XCTAssertTrue(try String(contentsOfFile: scratch + "/random/README.md", encoding: .utf8).contains(
            "The probes were random token ids: these figures show that the bundle computes the checkpoint's function, and are no measure of its quality on text."))
        r = try TestSupport.arapack("verify", bundle, "--parity", "--against", trained, "--tokens", shards, "--probe-ids", shards)
        XCTAssertEqual(r.status, 64)
    }

    /// Against the real thing (scripts/interop_eval.py): the loss equals PyTorch's within 1e-5 relative; the KL, Δp
    /// and top-1 figures of bf16 and int8 bundles equal numpy's from PyTorch's logits; a GGUF q8_0 file's mean KL is
    /// within 5 % of what llama.cpp's own logits give.
    func testEvalAgreesWithPyTorchNumpyAndLlamaCpp() throws {
        let python = try TestSupport.interopPython(importing: ["torch", "numpy", "safetensors", "llama_cpp"])
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_eval.py").path
        let r = try TestSupport.run(python, [script, TestSupport.arapackBinary, trained, TestSupport.fixture("tokens/heldout_u32.npy"), scratch])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.hasSuffix("\nok\n"), r.stdout)
        XCTAssertFalse(r.stdout.contains("FAIL"), r.stdout)
        print(r.stdout.split(separator: "\n").first { $0.hasPrefix("{") } ?? "")
    }

    func write(_ text: String, _ path: String) throws { try text.write(toFile: path, atomically: false, encoding: .utf8) }
    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// A little-endian u4 .npy of `rows` × `length` ids (i·7 + j mod vocab), as np.save lays it out.
    func npy(rows: Int, length: Int, vocab: Int) -> [UInt8] {
        var header = Array("{'descr': '<u4', 'fortran_order': False, 'shape': (\(rows), \(length)), }".utf8)
        while (10 + header.count + 1) % 64 != 0 { header.append(0x20) }
        header.append(0x0A)
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)] + header
        for i in 0..<rows { for j in 0..<length { withUnsafeBytes(of: UInt32((i * 7 + j) % vocab).littleEndian) { out += $0 } } }
        return out
    }
}
