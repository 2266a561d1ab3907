import ArapackFormats
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The ordinary mistakes a user makes at the keyboard, run against the built binary: each with its exit code, its
/// message, and the state of the disk afterwards. `--force` replaces only what arapack wrote; no output is, lies
/// inside or contains an input; a named output is written where it points.
final class KeyboardMistakeTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let trainingDict = TestSupport.fixture("torch/valid/training_dict.pt")
    let tokenizer = TestSupport.fixture("tokenizer/valid")
    let trained = TestSupport.fixture("trained/arafusion_tiny_ar.pt")

    func write(_ text: String, _ path: String) throws {
        try FileManager.default.createDirectory(atPath: splitPath(path).0, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func read(_ path: String) throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    /// A new EC P-256 key pair in the scratch folder (key.pem, pub.pem).
    func makeKeys() throws -> (key: String, pub: String) {
        for args in [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", scratch + "/key.pem"],
                     ["pkey", "-in", scratch + "/key.pem", "-pubout", "-out", scratch + "/pub.pem"]] {
            let r = try TestSupport.run("/usr/bin/openssl", args)
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        return (scratch + "/key.pem", scratch + "/pub.pem")
    }

    /// Every file below `folder` with its SHA-256 (links listed as `-> target`), to compare before and after.
    func snapshot(_ folder: String) throws -> [String: String] {
        var out: [String: String] = [:]
        func walk(_ dir: String, _ prefix: String) throws {
            for name in try directoryEntries(dir) {
                let path = dir + "/" + name
                switch try FileKind(atPath: path) {
                case .directory: try walk(path, prefix + name + "/")
                case .regular: out[prefix + name] = try SHA256.hex(ofFile: path)
                case .symlink: out[prefix + name] = "-> " + (try FileManager.default.destinationOfSymbolicLink(atPath: path))
                case .other: out[prefix + name] = "other"
                }
            }
        }
        try walk(folder, "")
        return out
    }

    /// `--force` over folders and files arapack did not write: refused with the reason, every byte left as it was.
    func testForceRefusesWhatArapackDidNotWrite() throws {
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer).status, 0)
        try write("my notes\n", scratch + "/proj/notes.txt")
        try write("data", scratch + "/proj/sub/data.bin")
        try write("hello", scratch + "/notes.gguf")
        try write("hello", scratch + "/model.pt")
        try FileManager.default.copyItem(atPath: bundle, toPath: scratch + "/edited")
        try write("my own file", scratch + "/edited/notes.txt")
        try write("not zstd", scratch + "/out.tar.zst")
        mkfifo(scratch + "/fifo.pt", 0o644)
        symlink("edited", scratch + "/link-to-edited")
        let cases: [(args: [String], message: String)] = [
            (["convert", trainingDict, scratch + "/proj", "--force"],
             "\(scratch)/proj is not a release bundle arapack wrote (it has no manifest.json, so arapack did not write it); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/edited", "--force"],
             "\(scratch)/edited is not a release bundle arapack wrote (it holds notes.txt, which arapack did not write (not in its manifest.json)); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/link-to-edited", "--force"],
             "\(scratch)/link-to-edited is not a release bundle arapack wrote (it holds notes.txt, which arapack did not write (not in its manifest.json)); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/proj", "--to", "dcp", "--force"],
             "\(scratch)/proj is not a DCP folder arapack wrote (it holds notes.txt, which arapack did not write); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trained, scratch + "/notes.gguf", "--to", "gguf", "--tokenizer", TestSupport.fixture("gguf/bytelevel"), "--force"],
             "\(scratch)/notes.gguf is not a GGUF file arapack wrote (it does not start with GGUF's magic); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/model.pt", "--to", "torch", "--force"],
             "\(scratch)/model.pt is not a torch.save checkpoint arapack wrote (it is no torch.save checkpoint arapack reads); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/fifo.pt", "--to", "torch", "--force"],
             "\(scratch)/fifo.pt is not a torch.save checkpoint arapack wrote (it is a FIFO, device or socket, not a regular file); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/proj/notes.txt", "--to", "torch", "--force"],
             "\(scratch)/proj/notes.txt is not a torch.save checkpoint arapack wrote (it is no torch.save checkpoint arapack reads); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
            (["convert", trainingDict, scratch + "/out", "--archive", "--force"],
             "\(scratch)/out.tar.zst is not a bundle archive arapack wrote (it is not zstd-compressed); --force replaces only what arapack wrote: choose another DST or remove it yourself (nothing was changed)"),
        ]
        let before = try snapshot(scratch)
        for c in cases {
            let r = try TestSupport.run(TestSupport.arapackBinary, c.args)
            XCTAssertEqual(r.status, 2, "\(c.args): \(r.stderr)")
            XCTAssertEqual(r.stderr, "arapack convert: error: \(c.message)\n", "\(c.args)")
            XCTAssertEqual(r.stdout, "")
            XCTAssertEqual(try snapshot(scratch), before, "\(c.args) changed the disk")
        }
    }

    /// An output that is an input, lies inside one or holds one: refused before anything is read, with or without --force.
    func testOutputsNeverOverlapInputs() throws {
        let rel = scratch + "/rel"
        try FileManager.default.createDirectory(atPath: rel, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: trainingDict, toPath: rel + "/ckpt.pt")
        try FileManager.default.copyItem(atPath: TestSupport.fixture("dcp/valid/full_shard"), toPath: scratch + "/dcp")
        link(rel + "/ckpt.pt", scratch + "/hardlink.pt")
        symlink("rel", scratch + "/rel-link")
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer).status, 0)
        let cases: [(args: [String], message: String)] = [
            (["convert", rel + "/ckpt.pt", rel], "\(rel) contains \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", rel + "/ckpt.pt", rel, "--force"], "\(rel) contains \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", rel + "/ckpt.pt", rel + "/ckpt.pt", "--to", "torch", "--force"], "\(rel)/ckpt.pt is \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", rel + "/ckpt.pt", scratch + "/hardlink.pt", "--to", "torch", "--force"], "\(scratch)/hardlink.pt is \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", rel + "/ckpt.pt", scratch + "/rel-link", "--force"], "\(scratch)/rel-link contains \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", rel + "/ckpt.pt", scratch + "/rel-link/../rel", "--force"], "\(scratch)/rel-link/../rel contains \(rel)/ckpt.pt, which this conversion reads"),
            (["convert", scratch + "/dcp", scratch + "/dcp/out", "--config", "{}"], "\(scratch)/dcp/out lies inside \(scratch)/dcp, which this conversion reads"),
            (["convert", bundle, bundle, "--dtype", "bf16", "--force"], "\(bundle) is \(bundle), which this conversion reads"),
        ]
        let before = try snapshot(scratch)
        for c in cases {
            let r = try TestSupport.run(TestSupport.arapackBinary, c.args)
            XCTAssertEqual(r.status, 2, "\(c.args): \(r.stderr)")
            XCTAssertEqual(r.stderr, "arapack convert: error: \(c.message); write the output elsewhere (nothing was read or changed)\n", "\(c.args)")
            XCTAssertEqual(try snapshot(scratch), before, "\(c.args) changed the disk")
        }
        // The archive beside DST is an output too: DST.tar.zst may not be the source archive.
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, scratch + "/pub", "--tokenizer", tokenizer, "--archive").status, 0)
        let r = try TestSupport.arapack("convert", scratch + "/pub.tar.zst", scratch + "/pub", "--archive", "--force")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "arapack convert: error: \(scratch)/pub.tar.zst is \(scratch)/pub.tar.zst, which this conversion reads; write the output elsewhere (nothing was read or changed)\n")
        // The input a flag names counts as well: the tokenizer folder.
        let t = try TestSupport.arapack("convert", trainingDict, scratch + "/bundle", "--tokenizer", bundle + "/base_tokenizer", "--force")
        XCTAssertEqual(t.status, 2)
        XCTAssertEqual(t.stderr, "arapack convert: error: \(bundle) contains \(bundle)/base_tokenizer, which this conversion reads; write the output elsewhere (nothing was read or changed)\n")
    }

    /// What `--force` does replace: an arapack bundle (signed or not), an empty folder, arapack's own GGUF, checkpoint,
    /// DCP folder and archive, and through a link to one (the link stays).
    func testForceReplacesWhatArapackWrote() throws {
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer, "--archive").status, 0)
        var r = try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer, "--archive", "--dtype", "bf16", "--force")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.loadJSON(bundle + "/config.json")["torch_dtype"]?.stringValue, "bfloat16")
        try FileManager.default.createDirectory(atPath: scratch + "/empty", withIntermediateDirectories: false)
        r = try TestSupport.arapack("convert", trainingDict, scratch + "/empty", "--tokenizer", tokenizer, "--force")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(pathExists(scratch + "/empty/manifest.json"))
        symlink("bundle", scratch + "/current")
        r = try TestSupport.arapack("convert", trainingDict, scratch + "/current", "--tokenizer", tokenizer, "--force")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileKind(atPath: scratch + "/current"), .symlink, "the link stays")
        XCTAssertEqual(try TestSupport.loadJSON(bundle + "/config.json")["torch_dtype"]?.stringValue, "float32", "its target was replaced")
        for (to, name) in [("torch", "m.pt"), ("dcp", "m.dcp")] {
            XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, scratch + "/" + name, "--to", to).status, 0)
            r = try TestSupport.arapack("convert", trainingDict, scratch + "/" + name, "--to", to, "--dtype", "bf16", "--force")
            XCTAssertEqual(r.status, 0, "\(to): \(r.stderr)")
        }
        let gguf = scratch + "/m.gguf"
        let args = ["convert", trained, gguf, "--to", "gguf", "--tokenizer", TestSupport.fixture("gguf/bytelevel")]
        XCTAssertEqual(try TestSupport.run(TestSupport.arapackBinary, args).status, 0)
        r = try TestSupport.run(TestSupport.arapackBinary, args + ["--dtype", "q8_0", "--force"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try directoryEntries(scratch).filter { $0.contains("arapack-tmp") }, [])
    }

    /// `--report`, `--signature`: written through a link (the link stays), into a FIFO or device in order, `-` is
    /// standard output; a folder is refused.
    func testNamedOutputsWrittenWhereTheyPoint() throws {
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer).status, 0)
        try write("old", scratch + "/target.json")
        symlink("target.json", scratch + "/link.json")
        var r = try TestSupport.arapack("verify", bundle, "--report", scratch + "/link.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileKind(atPath: scratch + "/link.json"), .symlink)
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/target.json")["passed"], .bool(true))
        // A dangling link: its target is created, as open(O_CREAT) would.
        symlink("made.json", scratch + "/dangling.json")
        XCTAssertEqual(try TestSupport.arapack("verify", bundle, "--report", scratch + "/dangling.json").status, 0)
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/made.json")["passed"], .bool(true))
        // '-' is standard output, and only the JSON is printed there.
        r = try TestSupport.arapack("verify", bundle, "--report", "-")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try JSONParser.parse(Array(r.stdout.utf8))["passed"], .bool(true))
        XCTAssertFalse(pathExists("-"))
        XCTAssertFalse(pathExists(scratch + "/-"))
        // A device: written to, left a device.
        r = try TestSupport.arapack("verify", bundle, "--report", "/dev/null")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileKind(atPath: "/dev/null"), .other)
        // A FIFO another program reads.
        let fifo = scratch + "/report.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/bin/sh")
        reader.arguments = ["-c", "cat \"$0\" > \"$1\"", fifo, scratch + "/from-fifo.json"]
        try reader.run()
        r = try TestSupport.arapack("verify", bundle, "--report", fifo)
        reader.waitUntilExit()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/from-fifo.json")["passed"], .bool(true))
        XCTAssertEqual(try FileKind(atPath: fifo), .other, "still a FIFO")
        // A folder is refused.
        r = try TestSupport.arapack("verify", bundle, "--report", scratch)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "arapack verify: error: \(scratch): write failed: Is a directory\n")
        // A signature through a link.
        let key = try makeKeys().key
        try write("", scratch + "/sig-target")
        symlink("sig-target", scratch + "/sig-link")
        r = try TestSupport.arapack("sign", bundle, "--key", key, "--signature", scratch + "/sig-link")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try FileKind(atPath: scratch + "/sig-link"), .symlink)
        XCTAssertTrue(try read(scratch + "/sig-target").contains("dsseEnvelope"))
    }

    /// A release without a tokenizer is said so at every step: a warning at convert, a row in the card, `note
    /// tokenizer: none` in verify (and in its report), whose verdict stays passed.
    func testNoTokenizerIsNeverSilent() throws {
        let bundle = scratch + "/bare"
        var r = try TestSupport.arapack("convert", trainingDict, bundle)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "arapack convert: warning: \(bundle): the release carries no tokenizer (pass --tokenizer DIR): AutoTokenizer cannot load it, and its card says so\n")
        XCTAssertTrue(try read(bundle + "/README.md").contains("| tokenizer | **none**: this release carries no tokenizer"))
        r = try TestSupport.arapack("convert", trainingDict, bundle + "-quiet", "--quiet")
        XCTAssertTrue(r.stderr.contains("warning:"), "a warning is no chatter: --quiet keeps it")
        r = try TestSupport.arapack("verify", bundle, "--report", scratch + "/r.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\nnote  tokenizer: none (the bundle carries no tokenizer: AutoTokenizer cannot load it)\n"), r.stdout)
        XCTAssertFalse(r.stdout.contains("ok    tokenizer"))
        let check = try TestSupport.loadJSON(scratch + "/r.json")["structural"]?["checks"]?.elements?.first { $0["name"]?.stringValue == "tokenizer" }
        XCTAssertEqual(check?["note"]?.stringValue, "none (the bundle carries no tokenizer: AutoTokenizer cannot load it)")
        XCTAssertEqual(check?["passed"], .bool(true))
        // With a tokenizer: no warning, no row, `ok`.
        r = try TestSupport.arapack("convert", trainingDict, scratch + "/full", "--tokenizer", tokenizer)
        XCTAssertEqual(r.stderr, "")
        XCTAssertFalse(try read(scratch + "/full/README.md").contains("| tokenizer |"))
        XCTAssertTrue(try TestSupport.arapack("verify", scratch + "/full").stdout.contains("\nok    tokenizer\n"))
    }

    /// verify's report is written whether the checks pass or fail, a failed signature included (with its result),
    /// and validates against the schema.
    func testReportWrittenOnFailure() throws {
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer).status, 0)
        let (key, pub) = try makeKeys()
        XCTAssertEqual(try TestSupport.arapack("sign", bundle, "--key", key).status, 0)
        var r = try TestSupport.arapack("verify", bundle, "--signature", bundle + "/model.sig", "--public-key", pub, "--report", scratch + "/ok.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        try write("{\"edited\": true}\n", bundle + "/training_metadata.json")
        r = try TestSupport.arapack("verify", bundle, "--signature", bundle + "/model.sig", "--public-key", pub, "--report", scratch + "/sig.json")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("arapack verify: \(bundle): signature: training_metadata.json"), r.stderr)
        let report = try TestSupport.loadJSON(scratch + "/sig.json")
        XCTAssertEqual(report["passed"], .bool(false))
        XCTAssertEqual(report["signature"]?["passed"], .bool(false))
        XCTAssertEqual(report["structural"], .null, "nothing parsed before the signature covers the files")
        r = try TestSupport.arapack("verify", bundle, "--report", scratch + "/structural.json")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/structural.json")["structural"]?["passed"], .bool(false))
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/ok.json")["signature"]?["passed"], .bool(true))
        try TestSupport.validateAgainstSchema("verify-report.schema.json", [scratch + "/ok.json", scratch + "/sig.json", scratch + "/structural.json"])
    }
}
