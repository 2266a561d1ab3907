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

    /// The wrong door: verify or sign at a checkpoint says what it is and which command fits; inspect reads archives;
    /// --config takes a file or the JSON itself.
    func testTheRightDoor() throws {
        let (key, _) = try makeKeys()
        for (args, command) in [(["verify", trainingDict], "verify"), (["sign", trainingDict, "--key", key], "sign")] {
            let r = try TestSupport.run(TestSupport.arapackBinary, args)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertEqual(r.stderr, "arapack \(command): error: \(trainingDict) is a torch.save checkpoint, not a release (a bundle folder, its .tar.zst archive or a GGUF file): `arapack inspect \(trainingDict)` describes it; `arapack convert \(trainingDict) DST` makes a release of it, which verify and sign then take\n")
        }
        let dcp = TestSupport.fixture("dcp/valid/full_shard")
        XCTAssertTrue(try TestSupport.arapack("verify", dcp).stderr.contains("is a torch.distributed.checkpoint (DCP) folder, not a release"))
        // An archive: described as the bundle it holds, tensor for tensor.
        let bundle = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, bundle, "--tokenizer", tokenizer, "--archive").status, 0)
        var r = try TestSupport.arapack("inspect", bundle + ".tar.zst", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let fromArchive = try JSONParser.parse(Array(r.stdout.utf8))
        let fromFolder = try JSONParser.parse(Array(try TestSupport.arapack("inspect", bundle, "--json").stdout.utf8))
        XCTAssertEqual(fromArchive["format"]?.stringValue, "tar.zst, holding " + (fromFolder["format"]?.stringValue ?? "?"))
        XCTAssertEqual(fromArchive["tensors"], fromFolder["tensors"])
        XCTAssertEqual(fromArchive["files"]?.elements?.map { $0["path"]?.stringValue }, ["model.safetensors"])
        try write(r.stdout, scratch + "/inspect.json")
        try TestSupport.validateAgainstSchema("inspect.schema.json", [scratch + "/inspect.json"])
        // --config: the JSON itself, or a file; inline JSON that does not parse is named.
        r = try TestSupport.arapack("convert", dcp, scratch + "/inline", "--config", "{\"n_heads\": 2}")
        XCTAssertEqual(r.status, 0, r.stderr)
        try write("{\"n_heads\": 2}", scratch + "/config.json")
        r = try TestSupport.arapack("convert", dcp, scratch + "/file", "--config", scratch + "/config.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/inline/model.safetensors"), try SHA256.hex(ofFile: scratch + "/file/model.safetensors"))
        r = try TestSupport.arapack("convert", dcp, scratch + "/bad", "--config", "{\"n_heads\": }")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.hasPrefix("arapack convert: error: --config {\"n_heads\": }: not a file, and not JSON either: "), r.stderr)
    }

    /// GGUF everywhere a bundle goes: inspect lists stored types and bytes; convert takes --parity (naming q8_0 and the
    /// GGUF form) and --sign (DST.sig); verify checks that signature, and its report validates.
    func testGGUFIsFirstClass() throws {
        let (key, pub) = try makeKeys()
        let gguf = scratch + "/m.gguf"
        var r = try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--dtype", "q8_0", "--tokenizer", TestSupport.fixture("gguf/bytelevel"),
                                        "--parity", "--sign", key)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\ndtype        q8_0, GGUF file (thresholds: q8_0)\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("(GGUF file)\nparity passed\n"), r.stdout)
        XCTAssertEqual(try directoryEntries(scratch).filter { !$0.hasSuffix(".pem") }, ["m.gguf", "m.gguf.sig"])
        r = try TestSupport.arapack("verify", gguf, "--signature", gguf + ".sig", "--public-key", pub, "--parity", "--against", trained,
                                    "--report", scratch + "/report.json")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("\nok    tensor types\n") && r.stdout.contains("\nok    signature: 1 file of m.gguf signed under"), r.stdout)
        let report = try TestSupport.loadJSON(scratch + "/report.json")
        XCTAssertEqual(report["parity"]?.elements?.first?["bundle_dtype"]?.stringValue, "q8_0")
        XCTAssertEqual(report["parity"]?.elements?.first?["form"]?.stringValue, "GGUF file")
        try TestSupport.validateAgainstSchema("verify-report.schema.json", [scratch + "/report.json"])
        // inspect: every matrix as the Q8_0 blocks the file stores (34 bytes per 32 values), the vectors F32.
        r = try TestSupport.arapack("inspect", gguf, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        let inspected = try JSONParser.parse(Array(r.stdout.utf8))
        let rows = inspected["tensors"]?.elements ?? []
        XCTAssertFalse(rows.isEmpty)
        for row in rows {
            let elements = (row["shape"]?.elements ?? []).reduce(1) { $0 * ($1.intValue ?? 0) }
            switch row["dtype"]?.stringValue {
            case "Q8_0": XCTAssertEqual(row["bytes"]?.intValue, elements / 32 * 34, "\(row)")
            case "F32": XCTAssertEqual(row["bytes"]?.intValue, elements * 4, "\(row)")
            default: XCTFail("\(row)")
            }
        }
        XCTAssertLessThanOrEqual(inspected["tensor_bytes"]?.intValue ?? .max, try fileSize(gguf))
        // The JSON carries metadata whole; the text shortens it.
        let description = inspected["metadata"]?["general.description"]?.stringValue ?? ""
        XCTAssertGreaterThan(description.count, 200)
        XCTAssertFalse(description.hasSuffix("…"))
        try write(r.stdout, scratch + "/inspect.json")
        try TestSupport.validateAgainstSchema("inspect.schema.json", [scratch + "/inspect.json"])
        XCTAssertTrue(try TestSupport.arapack("inspect", gguf).stdout.contains("Q8_0"))
        // sign on its own: a single file, FILE.sig by default.
        removeTree(gguf + ".sig")
        r = try TestSupport.arapack("sign", gguf, "--key", key)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "signed \(gguf): \(gguf).sig (ECDSA P-256, SHA-256)\n")
        XCTAssertEqual(try TestSupport.arapack("verify", gguf, "--signature", gguf + ".sig", "--public-key", pub).status, 0)
        // A signature beside a GGUF is an output too: an existing one needs --force, and a file that is none is refused.
        r = try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--tokenizer", TestSupport.fixture("gguf/bytelevel"), "--sign", key, "--force")
        XCTAssertEqual(r.status, 0, r.stderr)
        try write("my notes", gguf + ".sig")
        r = try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--tokenizer", TestSupport.fixture("gguf/bytelevel"), "--sign", key, "--force")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("\(gguf).sig is not a model signature arapack wrote"), r.stderr)
        XCTAssertEqual(try read(gguf + ".sig"), "my notes")
    }

    /// A GGUF whose tokenizer llama.cpp reads otherwise says so at convert time and in verify.
    func testTokenizerMismatchIsNeverSilent() throws {
        let gguf = scratch + "/t.gguf"
        var r = try TestSupport.arapack("convert", trained, gguf, "--to", "gguf", "--tokenizer", TestSupport.fixture("trained/tokenizer"), "--allow-tokenizer-mismatch")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("arapack convert: warning: \(gguf): llama.cpp tokenizes text otherwise than the tokenizer ("), r.stderr)
        r = try TestSupport.arapack("verify", gguf)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\nnote  tokenizer: mismatch (recorded: "), r.stdout)
        // The published layout: a MorphBPE pre-tokenizer at the top, whose segmentation GGUF cannot carry.
        let published = scratch + "/published"
        try FileManager.default.createDirectory(atPath: published + "/base_tokenizer", withIntermediateDirectories: true)
        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("gguf/bytelevel/" + name), toPath: published + "/base_tokenizer/" + name)
        }
        try write("{\"merges_per_word\": 4}\n", published + "/morphbpe_config.json")
        try write("def segment(word):\n    return [word]\n", published + "/morphbpe.py")
        r = try TestSupport.arapack("convert", trained, scratch + "/m.gguf", "--to", "gguf", "--tokenizer", published)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "arapack convert: warning: \(scratch)/m.gguf: the tokenizer's MorphBPE segmentation (morphbpe.py, morphbpe_config.json) does not travel into GGUF: llama.cpp applies the base BPE alone, so its ids differ from the published tokenizer's wherever MorphBPE splits words\n")
        // With the base tokenizer alone, nothing to warn about.
        r = try TestSupport.arapack("convert", trained, scratch + "/b.gguf", "--to", "gguf", "--tokenizer", published + "/base_tokenizer")
        XCTAssertEqual(r.stderr, "")
    }

    /// Every command speaks JSON on request, each document valid against its schema.
    func testJSONOnEveryCommand() throws {
        let (key, _) = try makeKeys()
        let bundle = scratch + "/b"
        var documents: [(schema: String, text: String)] = []
        var r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle, "--dtype", "int8", "--parity", "--json", "--tokenizer", tokenizer)
        XCTAssertEqual(r.status, 0, r.stderr)
        documents.append(("convert-result.schema.json", r.stdout))
        let converted = try JSONParser.parse(Array(r.stdout.utf8))
        XCTAssertEqual(converted["written"], .bool(true))
        XCTAssertEqual(converted["model"]?["parameter_count"]?.intValue, 21_760)
        XCTAssertEqual(converted["quantization"], try TestSupport.loadJSON(bundle + "/manifest.json")["quantization"])
        r = try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), scratch + "/f", "--dtype", "int8", "--parity", "--min-top1", "1.01", "--json")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(try JSONParser.parse(Array(r.stdout.utf8))["written"], .bool(false))
        XCTAssertFalse(pathExists(scratch + "/f"))
        documents.append(("convert-result.schema.json", r.stdout))
        r = try TestSupport.arapack("run", bundle, "--ids", "1,2,3", "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        documents.append(("run-result.schema.json", r.stdout))
        let text = try TestSupport.arapack("run", bundle, "--ids", "1,2,3")
        let checksum = text.stdout.split(separator: " ").last.map { String($0.dropLast()) }
        XCTAssertEqual(try JSONParser.parse(Array(r.stdout.utf8))["logits_sha256"]?.stringValue, checksum)
        r = try TestSupport.arapack("sign", bundle, "--key", key, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        documents.append(("sign-result.schema.json", r.stdout))
        r = try TestSupport.arapack("verify", bundle, "--json")
        XCTAssertEqual(r.status, 0, r.stderr)
        documents.append(("verify-report.schema.json", r.stdout))
        for (i, d) in documents.enumerated() {
            try write(d.text, scratch + "/doc\(i).json")
            try TestSupport.validateAgainstSchema(d.schema, [scratch + "/doc\(i).json"])
        }
    }
}
