import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// A release's bytes depend only on the source, the options and arapack's version: not on DST's name or depth,
/// the instruction set, the thread count; parity reports are the same bits under every setting.
final class ReproducibleReleaseTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let source = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
    let tokenizer = TestSupport.fixture("trained/tokenizer")

    /// Every file below `folder`, by relative path, with its bytes.
    func tree(_ folder: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for name in try BundleFolder.files(folder) {
            out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        }
        return out
    }

    func convert(_ dst: String, _ extra: [String] = [], environment: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(atPath: splitPath(dst).0, withIntermediateDirectories: true)
        let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, dst, "--tokenizer", tokenizer, "--dtype", "bf16", "--parity", "--archive",
                                                                "--quiet"] + extra, environment: environment.merging(["SOURCE_DATE_EPOCH": ""]) { $1 })
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testReleaseBytesDoNotDependOnTheFolderTheInstructionSetOrTheThreads() throws {
        let a = scratch + "/a", b = scratch + "/deeper/by/three/another-name"
        try convert(a)
        try convert(b, environment: ["ARAPACK_ISA": "avx2", "ARAPACK_THREADS": "1"])
        let first = try tree(a), second = try tree(b)
        XCTAssertEqual(first.keys.sorted(), second.keys.sorted())
        XCTAssertGreaterThanOrEqual(first.count, 8)
        for (name, bytes) in first { XCTAssertEqual(bytes, second[name], "\(name) differs") }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a + ".tar.zst")), try Data(contentsOf: URL(fileURLWithPath: b + ".tar.zst")),
                       "the archives differ")
        // The card and the archive name the release by the model's family and size, never by the folder.
        let card = String(decoding: first["README.md"]!, as: UTF8.self)
        XCTAssertTrue(card.contains("\n# AraFusion-AR-135K\n"), card)
        XCTAssertTrue(card.contains("from_pretrained(\"./AraFusion-AR-135K\", trust_remote_code=True"), card)
        XCTAssertFalse(card.contains("another-name") || card.contains("\"./a\""), card)
        let listing = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(b).tar.zst' | tar -tf - | head -1"])
        XCTAssertEqual(listing.stdout, "AraFusion-AR-135K/\n")
    }

    /// int8 and int4 bundles (scales, rounding, packing, the error report, parity on real data in the card) have the
    /// same bytes under the default settings, AVX2 on two threads and the generic kernels on one.
    func testQuantizedBundlesAreTheSameBytesUnderEverySetting() throws {
        for options in [["--dtype", "int8", "--int8-group-size", "16"], ["--dtype", "int4", "--int4-group-size", "32"]] {
            var trees: [[String: Data]] = []
            for (i, environment) in [[:], ["ARAPACK_ISA": "avx2", "ARAPACK_THREADS": "2"], ["ARAPACK_ISA": "generic", "ARAPACK_THREADS": "1"]].enumerated() {
                let dst = scratch + "/\(options[1])-\(i)/release"
                try FileManager.default.createDirectory(atPath: splitPath(dst).0, withIntermediateDirectories: true)
                let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, dst, "--tokenizer", tokenizer, "--parity", "--tokens",
                                                                        TestSupport.fixture("tokens/heldout_u32.npy"), "--quiet"] + options,
                                            environment: environment.merging(["SOURCE_DATE_EPOCH": ""]) { $1 })
                XCTAssertEqual(r.status, 0, r.stderr)
                trees.append(try tree(dst))
            }
            XCTAssertGreaterThanOrEqual(trees[0].count, 8)
            for other in trees.dropFirst() {
                XCTAssertEqual(trees[0].keys.sorted(), other.keys.sorted())
                for (name, bytes) in trees[0] { XCTAssertEqual(bytes, other[name], "\(options[1]): \(name) differs") }
            }
        }
    }

    func testRepoIDNamesTheCardTheArchiveAndTheQuickStart() throws {
        let dst = scratch + "/out"
        try convert(dst, ["--repo-id", "arafusion/AraFusion-AR-demo"])
        let card = try String(contentsOfFile: dst + "/README.md", encoding: .utf8)
        XCTAssertTrue(card.contains("\n# AraFusion-AR-demo\n"), card)
        XCTAssertTrue(card.contains("from_pretrained(\"arafusion/AraFusion-AR-demo\", trust_remote_code=True"), card)
        XCTAssertTrue(card.contains("AutoTokenizer.from_pretrained(\"arafusion/AraFusion-AR-demo\", subfolder=\"base_tokenizer\")"), card)
        let listing = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(dst).tar.zst' | tar -tf - | head -1"])
        XCTAssertEqual(listing.stdout, "AraFusion-AR-demo/\n")
        let bad = try TestSupport.arapack("convert", source, scratch + "/bad", "--repo-id", "a/b/c")
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("--repo-id: \"a/b/c\" is not a Hub repository id"), bad.stderr)
        XCTAssertFalse(pathExists(scratch + "/bad"))
    }

    func testParityReportsAreTheSameBitsUnderEverySetting() throws {
        let bundle = scratch + "/bundle"
        try convert(bundle)
        var reports: [String: Data] = [:]
        var settings: [[String: String]] = [[:], ["ARAPACK_THREADS": "1"], ["ARAPACK_THREADS": "3"]]
        settings += KernelISA.supported.map { ["ARAPACK_ISA": $0.rawValue] }
        for (i, environment) in settings.enumerated() {
            let report = scratch + "/report\(i).json"
            let r = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle, "--parity", "--against", source, "--probes", "3", "--report", report],
                                        environment: environment)
            XCTAssertEqual(r.status, 0, r.stderr)
            reports["\(environment)"] = try Data(contentsOf: URL(fileURLWithPath: report))
        }
        let first = reports["[:]"]!
        XCTAssertTrue(String(decoding: first, as: UTF8.self).contains("\"mean_kl\""))
        for (setting, bytes) in reports { XCTAssertEqual(bytes, first, "the report under \(setting) differs") }
        let bad = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle], environment: ["ARAPACK_ISA": "avx9"])
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("ARAPACK_ISA=avx9: expected one of generic, avx2, avx512"), bad.stderr)
    }

    /// GGUF block files have the same bytes under every instruction set and thread count (the K-quants' lockstep
    /// searches are built twice, generic and AVX2; the blocks split between threads), on the d-64 twin (fallback types)
    /// and on a mix, and their parity reports the same bits.
    func testGGUFBlockFilesAreTheSameBytesUnderEverySetting() throws {
        let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        var settings: [[String: String]] = [[:], ["ARAPACK_THREADS": "1"], ["ARAPACK_THREADS": "3"]]
        settings += KernelISA.supported.map { ["ARAPACK_ISA": $0.rawValue] }
        for dtype in ["q4_k_m", "q6_k", "q5_k"] {
            var digests: Set<String> = [], reports: Set<Data> = []
            for (i, environment) in settings.enumerated() {
                let file = scratch + "/\(dtype).gguf", report = scratch + "/\(dtype)-\(i).json"
                removeTree(file)
                let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", trained, file, "--to", "gguf", "--dtype", dtype,
                                                                        "--tokenizer", TestSupport.fixture("gguf/bytelevel"), "--quiet"], environment: environment)
                XCTAssertEqual(r.status, 0, r.stderr)
                digests.insert(try SHA256.hex(ofFile: file))
                let p = try TestSupport.run(TestSupport.arapackBinary, ["verify", file, "--parity", "--against", trained, "--probes", "3", "--report", report],
                                            environment: environment)
                XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
                reports.insert(try Data(contentsOf: URL(fileURLWithPath: report)))
            }
            XCTAssertEqual(digests.count, 1, "\(dtype): one file under every setting")
            XCTAssertEqual(reports.count, 1, "\(dtype): one parity report under every setting")
        }
    }
}
