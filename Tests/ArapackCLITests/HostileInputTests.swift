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

    /// Self-consistent bundles (manifest re-hashed) whose config.json holds absurd or ill-typed values: verify
    /// reports the field (exit 1), convert refuses the source (exit 2) and writes nothing; never a trap.
    func testAbsurdConfigValuesAreRefusedNamingTheField() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle).status, 0)
        try TestSupport.verifyEdited(bundle, file: "config.json", edits: [
            ("\"hidden_size\": 32", "\"hidden_size\": 4611686018427387904", "hidden_size"),
            ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000000", "num_hidden_layers"),
            ("\"num_attention_heads\": 4", "\"num_attention_heads\": 4611686018427387904", "num_attention_heads"),
            ("\"vocab_size\": 128", "\"vocab_size\": 0", "vocab_size"),
            ("\"intermediate_size\": 64", "\"intermediate_size\": -64", "intermediate_size"),
            ("\"num_attention_heads\": 4", "\"num_attention_heads\": 3", "not divisible"),
            ("\"max_position_embeddings\": 16", "\"max_position_embeddings\": null", "max_position_embeddings is null"),
            ("\"max_position_embeddings\": 16", "\"max_position_embeddings\": \"16\"", "max_position_embeddings"),
            ("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": 1e400", "layer_norm_eps"),
            ("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": -1e-05", "layer_norm_eps must be a finite number"),
            ("\"dropout\": 0.1", "\"dropout\": 7", "dropout must be a number in [0, 1]"),
            ("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"tanh\"", "hidden_act"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, edit.to + ": " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("FAIL  config: ") && r.stdout.contains(edit.fragment), edit.to + ": " + r.stdout)
            let c = try arapack("convert", bundle, scratch + "/out")
            XCTAssertEqual(c.status, 2, edit.to + ": " + c.stderr)
            XCTAssertTrue(c.stderr.contains(edit.fragment) && c.stderr.contains("config.json"), edit.to + ": " + c.stderr)
            XCTAssertEqual(c.stderr.split(separator: "\n").count, 1, c.stderr)
            XCTAssertFalse(pathExists(scratch + "/out"))
        }
    }

    /// tokenizer.json with ids near 2^63, a model that is not an object, or merges that are not pairs.
    func testHostileTokenizerValuesAreRefused() throws {
        let tokenizer = scratch + "/tok"
        try FileManager.default.createDirectory(atPath: tokenizer, withIntermediateDirectories: false)
        for name in try directoryEntries(TestSupport.fixture("tokenizer/valid")) {
            try FileManager.default.copyItem(atPath: TestSupport.fixture("tokenizer/valid/" + name), toPath: tokenizer + "/" + name)
        }
        let original = try String(contentsOfFile: tokenizer + "/tokenizer.json", encoding: .utf8)
        var json = try JSONSerialization.jsonObject(with: Data(original.utf8)) as! [String: Any]
        var model = json["model"] as! [String: Any]
        var vocab = model["vocab"] as! [String: Any]
        let edits: [(String, ([String: Any]) -> [String: Any], String)] = [
            ("vocab id 2^63-1", { j in var j = j; var m = model; var v = vocab; v["zz"] = Int.max; m["vocab"] = v; j["model"] = m; return j }, "no token id in 0...2147483647"),
            ("added id 2^63-1", { j in var j = j; var a = j["added_tokens"] as! [[String: Any]]; a[0]["id"] = Int.max; j["added_tokens"] = a; return j }, "added_tokens[0] has no token id"),
            ("model a string", { j in var j = j; j["model"] = "BPE"; return j }, "model must be an object"),
            ("merges garbage", { j in var j = j; var m = model; m["merges"] = [1, 2, 3]; j["model"] = m; return j }, "model.merges[0] is not a pair"),
        ]
        for (label, edit, fragment) in edits {
            try JSONSerialization.data(withJSONObject: edit(json)).write(to: URL(fileURLWithPath: tokenizer + "/tokenizer.json"))
            let r = try arapack("convert", TestSupport.fixture("torch/valid/training_dict.pt"), scratch + "/out", "--tokenizer", tokenizer)
            XCTAssertEqual(r.status, 2, label + ": " + r.stderr)
            XCTAssertTrue(r.stderr.contains(fragment) && r.stderr.contains("tokenizer.json"), label + ": " + r.stderr)
            XCTAssertFalse(pathExists(scratch + "/out"))
        }
        _ = (json, model, vocab)
        json = [:]; model = [:]; vocab = [:]
    }

    /// convert from a bundle whose manifest lies, or whose tokenizer is damaged, refuses it (exit 2) instead of
    /// writing a fresh bundle with a new, valid manifest; a manifest listing a file twice fails verify.
    func testDamagedSourceBundlesAreNotLaundered() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("torch/valid/training_dict.pt"), bundle, "--tokenizer",
                                   TestSupport.fixture("tokenizer/valid"), "--archive").status, 0)
        XCTAssertEqual(try arapack("convert", bundle, scratch + "/fine").status, 0, "an intact bundle converts")
        XCTAssertEqual(try arapack("convert", bundle + ".tar.zst", scratch + "/fine2").status, 0, "so does its archive")
        let manifest = try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8)
        let tokenizer = try String(contentsOfFile: bundle + "/tokenizer.json", encoding: .utf8)
        for (label, damage, fragment) in [
            ("a lying size", { try writeText(manifest.replacingOccurrences(of: #""size": (\d+)"#, with: "\"size\": 1$1", options: .regularExpression), to: bundle + "/manifest.json") }, "bytes, the manifest says"),
            ("a tokenizer changed after the manifest", { try writeText(tokenizer.replacingOccurrences(of: "\"<s>\"", with: "\"<S>\""), to: bundle + "/tokenizer.json") }, "tokenizer.json has SHA-256"),
        ] as [(String, () throws -> Void, String)] {
            try damage()
            let r = try arapack("convert", bundle, scratch + "/out")
            XCTAssertEqual(r.status, 2, label + ": " + r.stderr)
            XCTAssertTrue(r.stderr.contains("the source bundle fails verification") && r.stderr.contains(fragment), label + ": " + r.stderr)
            XCTAssertFalse(pathExists(scratch + "/out"))
            try writeText(manifest, to: bundle + "/manifest.json")
            try writeText(tokenizer, to: bundle + "/tokenizer.json")
        }
        // A manifest listing one file twice.
        var doc = try JSONSerialization.jsonObject(with: Data(manifest.utf8)) as! [String: Any]
        var files = doc["files"] as! [[String: Any]]
        files.append(files[0])
        doc["files"] = files
        try JSONSerialization.data(withJSONObject: doc).write(to: URL(fileURLWithPath: bundle + "/manifest.json"))
        let r = try arapack("verify", bundle)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("\(files[0]["path"]!) is listed twice"), r.stdout)
    }

    /// Names from a file carrying newlines and ANSI escapes cannot forge report lines or split the error line.
    func testControlCharactersInNamesAreEscaped() throws {
        let path = scratch + "/forged.safetensors"
        let name = "x\n\u{1b}[32mglobals     3 referenced: 3 safe, 0 unknown, 0 dangerous"
        let header = "{\"\(name.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\u{1b}", with: "\\u001b"))\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}"
        var bytes = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { for i in 0..<8 { bytes[i] = $0[i] } }
        bytes += Array(header.utf8) + [0, 0, 0, 0]
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let r = try TestSupport.arapack("inspect", path)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("\u{1b}"), "no raw escape reaches the terminal")
        XCTAssertFalse(r.stdout.split(separator: "\n").contains { $0.hasPrefix("globals") }, "no forged line: " + r.stdout)
        XCTAssertTrue(r.stdout.contains("x\\u{a}\\u{1b}[32mglobals"), r.stdout)
    }

    /// 100,000-deep structures inside a real checkpoint's data.pkl (under an extra key of the training dict):
    /// deep tuples are refused at the nesting limit (exit 2), deep lists and dicts are walked without recursion
    /// (the checkpoint still converts), and a deep file that names posix.system is refused for the global.
    func testHundredThousandDeepPicklesAreHandledCleanly() throws {
        let source = try ZipArchive(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        let pickleName = source.entries.first { $0.name.hasSuffix("/data.pkl") }!.name
        let original = try source.bytes(of: pickleName)
        XCTAssertEqual(original.last, 0x2e)
        func string(_ s: String) -> [UInt8] {
            [0x58] + withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian) { Array($0) } + Array(s.utf8)
        }
        let n = 100_000
        let cases: [(String, [UInt8], Int32, String)] = [
            ("tuples", [0x29] + [UInt8](repeating: 0x85, count: n), 2, "values nested in values"),
            ("lists", [UInt8](repeating: 0x5d, count: n) + [UInt8](repeating: 0x61, count: n - 1), 0, ""),
            ("dicts", [0x7d] + Array([[UInt8]](repeating: string("k") + [0x7d], count: n - 1).joined()) + [UInt8](repeating: 0x73, count: n - 1), 0, ""),
            ("lists + posix.system", Array("cposix\nsystem\n".utf8) + [0x30] + [UInt8](repeating: 0x5d, count: n) + [UInt8](repeating: 0x61, count: n - 1), 2, "posix.system"),
        ]
        for (label, deep, status, fragment) in cases {
            let path = scratch + "/deep.pt"
            let out = try AtomicFileWriter(destination: path)
            let zip = ZipWriter(out)
            for e in source.entries {
                try zip.add(e.name, e.name == pickleName ? Array(original.dropLast()) + string("x") + deep + [0x73, 0x2e] : try source.bytes(of: e.name))
            }
            try zip.finish()
            try out.commit()
            for command in [["inspect", path], ["convert", path, scratch + "/out"]] {
                let r = try TestSupport.run("/usr/bin/timeout", ["60", TestSupport.arapackBinary] + command)
                XCTAssertEqual(r.status, status, "\(label) \(command[0]): " + r.stderr.prefix(300))
                if status != 0 {
                    XCTAssertTrue(r.stderr.contains(fragment), label + ": " + r.stderr)
                    XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
                }
            }
            removeTree(scratch + "/out")
        }
    }

    /// A DCP folder whose data file is a symlink (leading outside it) or whose .metadata is a FIFO is refused
    /// before anything is opened.
    func testDCPFoldersHoldRegularFilesOnly() throws {
        let original = TestSupport.fixture("dcp/valid/full_shard")
        let copy = scratch + "/dcp"
        try FileManager.default.copyItem(atPath: original, toPath: copy)
        try writeText("{\"n_heads\": 4}", to: scratch + "/heads.json")
        XCTAssertEqual(try arapack("convert", copy, scratch + "/ok", "--config", scratch + "/heads.json").status, 0, "the copy converts")
        let data = try directoryEntries(copy).first { $0.hasSuffix(".distcp") }!
        removeTree(copy + "/" + data)
        symlink(original + "/" + data, copy + "/" + data)
        var r = try arapack("convert", copy, scratch + "/out", "--config", scratch + "/heads.json")
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(data) is a symlink"), r.stderr)
        removeTree(copy + "/" + data)
        try FileManager.default.copyItem(atPath: original + "/" + data, toPath: copy + "/" + data)
        removeTree(copy + "/.metadata")
        XCTAssertEqual(mkfifo(copy + "/.metadata", 0o600), 0)
        for command in [["inspect", copy], ["convert", copy, scratch + "/out", "--config", scratch + "/heads.json"]] {
            r = try TestSupport.run("/usr/bin/timeout", ["30", TestSupport.arapackBinary] + command)
            XCTAssertEqual(r.status, 2, "refused, not blocked (124): \(command[0]) " + r.stderr)
        }
        XCTAssertFalse(pathExists(scratch + "/out"))
    }

    /// A conversion that fails while the source is still being hashed on the other core stops that hash before
    /// the process exits (it used to run on into OpenSSL's exit-time cleanup: SIGSEGV in ~1 of 10 runs).
    func testFailingConversionNeverCrashesInTheBackgroundHash() throws {
        try writeText("{\"n_heads\": 4, \"activation\": \"gelu\", \"layer_norm_eps\": 1e-5, \"causal\": true}", to: scratch + "/heads.json")
        for _ in 0..<40 {
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture("dcp/hostile/declared_dtype_mismatch"),
                                                                   scratch + "/out", "--config", scratch + "/heads.json", "--archive"])
            XCTAssertEqual(r.status, 2, r.stderr.prefix(400) + "")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr.prefix(400) + "")
        }
    }

    /// No false positives: a checkpoint holding a Python set or a complex tensor outside the model
    /// loads with torch.load(weights_only=True), and arapack reads and converts it too. Made by real PyTorch.
    func testSetsAndComplexTensorsOutsideTheModelAreAccepted() throws {
        let python = try TestSupport.interopPython(importing: ["torch"])
        let script = """
            import sys, torch
            ck = torch.load(sys.argv[1], weights_only=True)
            ck["tags"] = {"a", "b"}
            ck["spectrum"] = torch.zeros(3, dtype=torch.complex64)
            ck["spectrum128"] = torch.ones(2, dtype=torch.complex128)
            for protocol in (2,):  # weights_only reads protocol 2, torch.save's default
                path = f"{sys.argv[2]}/extras-{protocol}.pt"
                torch.save(ck, path, pickle_protocol=protocol)
                torch.load(path, weights_only=True)
            """
        let r = try TestSupport.run(python, ["-c", script, TestSupport.fixture("torch/valid/training_dict.pt"), scratch])
        XCTAssertEqual(r.status, 0, r.stderr)
        for version in [2] {
            let path = scratch + "/extras-\(version).pt"
            var a = try arapack("inspect", path)
            XCTAssertEqual(a.status, 0, "protocol \(version): " + a.stderr)
            XCTAssertTrue(a.stdout.contains("0 unknown, 0 dangerous"), a.stdout)
            a = try arapack("convert", path, scratch + "/out-\(version)")
            XCTAssertEqual(a.status, 0, "protocol \(version): " + a.stderr)
        }
    }

    /// generation_config.json values a generator would choke on are failed checks naming the field.
    func testHostileGenerationConfigsFailVerify() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle).status, 0)
        try TestSupport.verifyEdited(bundle, file: "generation_config.json", edits: [
            ("\"temperature\": 0.8", "\"temperature\": -1", "temperature -1 is not a positive number"),
            ("\"top_p\": 0.9", "\"top_p\": 7", "top_p 7 is not in (0, 1]"),
            ("\"max_length\": 16", "\"max_length\": 1099511627776", "max_length 1099511627776 is not within 1...16"),
            ("\"do_sample\": true", "\"do_sample\": \"yes\"", "do_sample is not true or false"),
            ("\"eos_token_id\": 2", "\"eos_token_id\": 9223372036854775807", "eos_token_id differs"),
        ]) { edit, r in
            XCTAssertEqual(r.status, 1, edit.to + ": " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains(edit.fragment), edit.to + ": " + r.stdout)
        }
    }

    /// Manifest entries that point outside the bundle, are empty, or carry impossible sizes or digests are named.
    func testManifestEntriesMustBeRelativeWithRealSizesAndDigests() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle).status, 0)
        let manifest = try String(contentsOfFile: bundle + "/manifest.json", encoding: .utf8)
        for (from, to, fragment) in [
            ("\"path\": \"config.json\"", "\"path\": \"../config.json\"", "../config.json is not a relative path inside the bundle"),
            ("\"path\": \"config.json\"", "\"path\": \"/etc/passwd\"", "/etc/passwd is not a relative path inside the bundle"),
            ("\"path\": \"config.json\"", "\"path\": \"\"", " is not a relative path inside the bundle"),
        ] {
            XCTAssertTrue(manifest.contains(from))
            try writeText(manifest.replacingOccurrences(of: from, with: to), to: bundle + "/manifest.json")
            let r = try arapack("verify", bundle)
            XCTAssertEqual(r.status, 1, to + ": " + r.stdout)
            XCTAssertTrue(r.stdout.contains(fragment), to + ": " + r.stdout)
        }
        let negative = manifest.replacingOccurrences(of: #""size": (\d+),\s*"sha256": "([0-9a-f]+)""#, with: "\"size\": -1, \"sha256\": \"$2\"",
                                                     options: .regularExpression)
        try writeText(negative, to: bundle + "/manifest.json")
        let r = try arapack("verify", bundle)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("the size must be a byte count and sha256 64 lower-case hex digits"), r.stdout)
    }
}
