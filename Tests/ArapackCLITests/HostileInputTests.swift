import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Hostile input above the file formats (issue 15, the parts done so far): parser differentials in zip entry
/// names, absurd numbers in well-formed JSON, FIFOs and symlinks inside bundles, absurd flags. Each ends in
/// one line and its exit code, never a trap, a hang or output.
final class HostileInputTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    /// Runs arapack under a 30 s timeout (status 124 means it hung).
    func arapack(_ arguments: String...) throws -> TestSupport.ProcessResult {
        try TestSupport.run("/usr/bin/timeout", ["30", TestSupport.arapackBinary] + arguments)
    }

    /// A real torch.save checkpoint rewritten with one more entry whose name differs from another only in case:
    /// arapack reads the exact name, PyTorch's reader may resolve the other (a shadow data.pkl or storage).
    func testZipEntriesThatDifferOnlyInCaseAreRefused() throws {
        let source = try ZipArchive(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        let pickle = source.entries.first { $0.name.hasSuffix("/data.pkl") }!.name
        let storage = source.entries.first { $0.name.contains("/data/") }!.name
        for shadow in [pickle.uppercased(), String(pickle.dropLast(8)) + "Data.Pkl", storage.replacingOccurrences(of: "/data/", with: "/DATA/")] {
            let path = scratch + "/shadow.pt"
            let out = try AtomicFileWriter(destination: path)
            let zip = ZipWriter(out)
            for e in source.entries { try zip.add(e.name, try source.bytes(of: e.name)) }
            try zip.add(shadow, try source.bytes(of: shadow.lowercased() == pickle.lowercased() ? pickle : storage))
            try zip.finish()
            try out.commit()
            for command in [["inspect", path], ["convert", path, scratch + "/out"]] {
                let r = try TestSupport.run(TestSupport.arapackBinary, command)
                XCTAssertEqual(r.status, 2, "\(shadow) \(command[0]): " + r.stderr)
                XCTAssertTrue(r.stderr.contains("differ only in letter case") && r.stderr.contains(shadow), r.stderr)
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            }
            XCTAssertFalse(pathExists(scratch + "/out"))
        }
    }

    func testAbsurdIndexTotalSizeIsAnErrorNotATrap() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle, "--max-shard-size", "30kB").status, 0)
        let index = bundle + "/model.safetensors.index.json"
        let text = try String(contentsOfFile: index, encoding: .utf8)
        for absurd in ["1180591620717411303424", "1e400", "-5", "3.5"] {
            try writeText(text.replacingOccurrences(of: #""total_size": \d+"#, with: "\"total_size\": \(absurd)", options: .regularExpression), to: index)
            let r = try arapack("inspect", bundle)
            XCTAssertEqual(r.status, 2, absurd + ": " + r.stderr)
            XCTAssertTrue(r.stderr.contains("metadata.total_size") && r.stderr.contains("model.safetensors.index.json"), r.stderr)
        }
    }

    func testFIFOsAndSymlinksInsideABundleAreRefusedWithoutBlocking() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle).status, 0)
        XCTAssertEqual(mkfifo(bundle + "/fifo.json", 0o600), 0)
        var r = try arapack("verify", bundle)
        XCTAssertEqual(r.status, 2, "refused, not blocked (124 is a hang): " + r.stderr)
        XCTAssertTrue(r.stderr.contains("fifo.json: not a regular file"), r.stderr)
        unlink(bundle + "/fifo.json")
        symlink("/etc/hostname", bundle + "/outside.json")
        r = try arapack("verify", bundle)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("outside.json: a symlink"), r.stderr)
    }

    func testAbsurdFlagsAreUsageErrors() throws {
        let bundle = scratch + "/b"
        let source = TestSupport.fixture("golden/ar_gelu.pt")
        XCTAssertEqual(try arapack("convert", source, bundle).status, 0)
        for (arguments, fragment) in [
            (["convert", source, scratch + "/x", "--max-shard-size", "1e300B"], "--max-shard-size"),
            (["convert", source, scratch + "/x", "--max-shard-size", "nanGB"], "--max-shard-size"),
            (["verify", bundle, "--parity", "--against", source, "--probes", "1099511627776"], "--probes must be between 1 and 4096"),
            (["verify", bundle, "--parity", "--against", source, "--seq-len", "17"], "--seq-len 17 is more than the model's max_position_embeddings (16)"),
            (["verify", bundle, "--parity", "--against", source, "--seq-len", "1099511627776"], "max_position_embeddings (16)"),
        ] {
            let r = try TestSupport.run(TestSupport.arapackBinary, arguments)
            XCTAssertEqual(r.status, 64, "\(arguments): " + r.stderr)
            XCTAssertTrue(r.stderr.contains(fragment), r.stderr)
        }
        XCTAssertFalse(pathExists(scratch + "/x"))
        let r = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle, "--parity", "--against", source, "--seq-len", "16"])
        XCTAssertEqual(r.status, 0, "the limit itself is allowed: " + r.stderr)
    }
}
