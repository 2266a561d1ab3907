import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// `arapack release`: every artifact of a plan from one read of the checkpoint, each byte for byte what `convert`
/// writes alone; release.json; plan mistakes named by line before anything is read; all or nothing.
final class ReleaseCommandTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let source = TestSupport.fixture("trained/arafusion_tiny_ar.pt")

    /// The plan of the issue's example: a bf16 bundle with its archive, an int4 bundle, the GPT-2 form and a GGUF file,
    /// parity on held-out shards; a tokenizer llama.cpp reads.
    func plan(_ extra: String = "", header: String = "") -> String {
        """
        # the twin's release
        source = "\(source)"
        repo_id = "AraFus/AraFusion-AR-tiny"
        tokenizer = "\(TestSupport.fixture("gguf/metaspace"))"
        parity = true\(header)
        tokens = "\(TestSupport.fixture("tokens/heldout_u32.npy"))"

        [[artifact]]
        to = "bundle"
        dtype = "bf16"
        archive = true   # and its .sha256

        [[artifact]]
        dtype = "int4"
        int4_group_size = 32

        [[artifact]]
        to = "gpt2"
        dtype = "f16"

        [[artifact]]
        to = "gguf"
        dtype = "q8_0"
        \(extra)
        """
    }

    func release(_ arguments: [String], environment: [String: String] = [:]) throws -> TestSupport.ProcessResult {
        try TestSupport.run(TestSupport.arapackBinary, ["release"] + arguments, environment: environment.merging(["SOURCE_DATE_EPOCH": ""]) { $1 })
    }

    /// Every file below `folder` (files beside it: the archive and its checksum too), by path, with its bytes.
    func tree(_ folder: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let enumerator = FileManager.default.enumerator(atPath: folder)!
        while let name = enumerator.nextObject() as? String {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder + "/" + name, isDirectory: &isFolder), !isFolder.boolValue {
                out[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
            }
        }
        return out
    }

    func testEachArtifactIsWhatConvertWritesAloneAndReleaseJSONListsThem() throws {
        // The run's log (WandB's CSV): set for the whole release, its plots go into every bundle, not the GGUF file.
        let log = scratch + "/history.csv"
        try writeText("_step,train/loss,val/loss,lr,tokens\n0,6.2,6.3,0.0001,0\n100,4.0,,0.003,409600\n200,3.1,3.4,0.003,819200\n", to: log)
        try writeText(plan(header: "\ntraining_log = \"\(log)\""), to: scratch + "/plan.toml")
        let dst = scratch + "/release"
        let r = try release(["--plan", scratch + "/plan.toml", dst])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("AraFusion-AR-tiny-int4: bundle int4, "), r.stdout)
        XCTAssertTrue(r.stdout.contains("\nwrote \(dst): 4 artifact(s), "), r.stdout)
        let written = try tree(dst)

        // Each artifact: byte for byte what `convert` writes with the same flags.
        let shared = ["--repo-id", "AraFus/AraFusion-AR-tiny", "--tokenizer", TestSupport.fixture("gguf/metaspace"), "--parity", "--tokens",
                      TestSupport.fixture("tokens/heldout_u32.npy")]
        let curves = ["--training-log", log]
        let alone: [(name: String, options: [String])] = [
            ("AraFusion-AR-tiny", shared + curves + ["--dtype", "bf16", "--archive"]),
            ("AraFusion-AR-tiny-int4", shared + curves + ["--dtype", "int4", "--int4-group-size", "32"]),
            ("AraFusion-AR-tiny-gpt2", shared + curves + ["--to", "gpt2", "--dtype", "f16"]),
            ("AraFusion-AR-tiny-GGUF/AraFusion-AR-tiny-Q8_0.gguf", Array(shared[2...]) + ["--to", "gguf", "--dtype", "q8_0"]),
        ]
        var expected: [String: Data] = [:]
        for (i, a) in alone.enumerated() {
            let out = scratch + "/alone-\(i)"
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
            let dst = out + "/" + splitPath(a.name).1
            let c = try TestSupport.run(TestSupport.arapackBinary, ["convert", source, dst, "--quiet"] + a.options, environment: ["SOURCE_DATE_EPOCH": ""])
            XCTAssertEqual(c.status, 0, c.stderr)
            let prefix = a.name.contains("/") ? splitPath(a.name).0 + "/" : ""
            for (name, bytes) in try tree(out) { expected[prefix + name] = bytes }
        }
        XCTAssertEqual(Set(written.keys), Set(expected.keys).union([ReleaseIndex.fileName]))
        // Byte for byte but each bundle's card, which gains the table of forms, the manifest's line for the card, and
        // the archive holding them.
        let cards = written.keys.filter { $0.hasSuffix("/README.md") }
        XCTAssertEqual(cards.count, 3)
        XCTAssertEqual(written.keys.filter { $0.hasSuffix("/learning_rate.svg") }.count, 3, "the plots in every bundle")
        for (name, bytes) in expected where !name.hasSuffix("/README.md") && !name.hasSuffix("/manifest.json") && !name.contains(".tar.zst") {
            XCTAssertEqual(written[name], bytes, "\(name) differs from convert's")
        }
        for card in cards {
            let folder = String(card.dropLast("/README.md".count))
            let mine = String(decoding: written[card]!, as: UTF8.self), theirs = String(decoding: expected[card]!, as: UTF8.self)
            let section = try XCTUnwrap(mine.range(of: "\n\n## Every form of this release\n"), card)
            let end = try XCTUnwrap(mine.range(of: "\n\n## Quick start\n", range: section.upperBound..<mine.endIndex), card)
            XCTAssertEqual(String(mine[..<section.lowerBound]) + String(mine[end.lowerBound...]), theirs, "\(card): only the table is new")
            let table = String(mine[section.lowerBound..<end.lowerBound])
            XCTAssertTrue(table.contains("| **\(folder)** (this one) | "), table)
            for sibling in ["AraFusion-AR-tiny", "AraFusion-AR-tiny-int4", "AraFusion-AR-tiny-gpt2", "AraFusion-AR-tiny-GGUF"] where sibling != folder {
                XCTAssertTrue(table.contains("| [\(sibling)](https://huggingface.co/AraFus/\(sibling))"), "\(card): \(sibling)")
            }
            XCTAssertTrue(table.contains("| [AraFusion-AR-tiny-GGUF](https://huggingface.co/AraFus/AraFusion-AR-tiny-GGUF) (`AraFusion-AR-tiny-Q8_0.gguf`) | gguf, q8_0 | "
                                         + grouped(written["AraFusion-AR-tiny-GGUF/AraFusion-AR-tiny-Q8_0.gguf"]!.count) + " | ") || folder == "AraFusion-AR-tiny-GGUF", table)
            var a = try JSONParser.parse(Array(written[folder + "/manifest.json"]!)), b = try JSONParser.parse(Array(expected[folder + "/manifest.json"]!))
            for m in [a, b] { XCTAssertEqual(m["files"]?.elements?.filter { $0["path"] == .string("README.md") }.count, 1) }
            func withoutCard(_ m: inout JSONValue) {
                guard case var .object(members) = m, let i = members.firstIndex(where: { $0.key == "files" }) else { return }
                members[i].value = .array((members[i].value.elements ?? []).filter { $0["path"] != .string("README.md") })
                m = .object(members)
            }
            withoutCard(&a)
            withoutCard(&b)
            XCTAssertEqual(a, b, "\(folder)/manifest.json: only the card's line differs")
            let verify = try TestSupport.run(TestSupport.arapackBinary, ["verify", dst + "/" + folder])
            XCTAssertEqual(verify.status, 0, verify.stdout)
        }
        let archive = try TestSupport.run(TestSupport.arapackBinary, ["verify", dst + "/AraFusion-AR-tiny.tar.zst"])
        XCTAssertEqual(archive.status, 0, archive.stdout + archive.stderr)

        // release.json: every file with its bytes and SHA-256, the parity figures, the source's digest; the schema holds.
        let index = try TestSupport.loadJSON(dst + "/release.json")
        try TestSupport.validateAgainstSchema("release.schema.json", [dst + "/release.json"])
        XCTAssertEqual(index["source_sha256"]?.stringValue, try SHA256.hex(ofFile: source))
        let artifacts = try XCTUnwrap(index["artifacts"]?.elements)
        XCTAssertEqual(artifacts.compactMap { $0["name"]?.stringValue }, alone.map(\.name))
        XCTAssertEqual(artifacts.compactMap { $0["dtype"]?.stringValue }, ["bfloat16", "int4", "float16", "q8_0"])
        var listed: [String] = []
        for a in artifacts {
            XCTAssertEqual(a["parity"]?["passed"], .bool(true))
            var total = 0
            for f in a["files"]?.elements ?? [] {
                let path = try XCTUnwrap(f["path"]?.stringValue)
                listed.append(path)
                XCTAssertEqual(f["size"]?.intValue, written[path]?.count, path)
                XCTAssertEqual(f["sha256"]?.stringValue, try SHA256.hex(ofFile: dst + "/" + path), path)
                total += f["size"]?.intValue ?? 0
            }
            XCTAssertEqual(a["bytes"]?.intValue, total)
        }
        XCTAssertEqual(Set(listed), Set(written.keys).subtracting([ReleaseIndex.fileName]), "release.json lists every file")

        // The whole set has the same bytes under another DST name, the generic kernels and one thread.
        let other = scratch + "/deeper/another-name"
        try FileManager.default.createDirectory(atPath: scratch + "/deeper", withIntermediateDirectories: false)
        let again = try release(["--plan", scratch + "/plan.toml", other], environment: ["ARAPACK_ISA": "generic", "ARAPACK_THREADS": "1"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try tree(other), written)
    }

    /// Parity on random probes (no --tokens): each card's table gives mean KL and top-1 agreement and says they measure
    /// no quality; without a repo id the siblings are named, not linked.
    func testTheTableOfFormsOnRandomProbes() throws {
        let dst = scratch + "/release"
        let r = try release([source, dst, "--parity", "--artifact", "dtype=bf16", "--artifact", "dtype=int8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let card = try String(contentsOfFile: dst + "/AraFusion-AR-135K-int8/README.md", encoding: .utf8)
        XCTAssertTrue(card.contains("| artifact | form | weights (bytes) | mean KL | top-1 agreement |\n"), card)
        XCTAssertTrue(card.contains("\n| AraFusion-AR-135K | bundle, bfloat16 | 272,848 | "), card)
        XCTAssertTrue(card.contains("\n| **AraFusion-AR-135K-int8** (this one) | bundle, int8 | "), card)
        XCTAssertTrue(card.contains("Each against the checkpoint on random token ids: these figures show that each form computes the checkpoint's function, and are no measure of its quality on text."), card)
        let index = try TestSupport.loadJSON(dst + "/release.json")
        let figures = try XCTUnwrap(index["artifacts"]?.elements?.last?["parity"])
        XCTAssertTrue(card.contains(" | " + metricText(try XCTUnwrap(figures["mean_kl"]?.doubleValue)) + " | "), card)
    }

    /// `sign = KEY` signs every artifact: a bundle once its card has the table of forms (its signature covers the final
    /// card and manifest), a GGUF file beside it; `arapack verify --signature` accepts each.
    func testSignedReleaseSetsVerify() throws {
        for args in [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", scratch + "/key.pem"],
                     ["pkey", "-in", scratch + "/key.pem", "-pubout", "-out", scratch + "/pub.pem"]] {
            XCTAssertEqual(try TestSupport.run("/usr/bin/openssl", args).status, 0)
        }
        try writeText(plan(header: "\nsign = \"\(scratch)/key.pem\""), to: scratch + "/plan.toml")
        let dst = scratch + "/release"
        let r = try release(["--plan", scratch + "/plan.toml", dst])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for (artifact, signature) in [("AraFusion-AR-tiny", "AraFusion-AR-tiny/model.sig"), ("AraFusion-AR-tiny-int4", "AraFusion-AR-tiny-int4/model.sig"),
                                      ("AraFusion-AR-tiny-gpt2", "AraFusion-AR-tiny-gpt2/model.sig"),
                                      ("AraFusion-AR-tiny-GGUF/AraFusion-AR-tiny-Q8_0.gguf", "AraFusion-AR-tiny-GGUF/AraFusion-AR-tiny-Q8_0.gguf.sig")] {
            let v = try TestSupport.run(TestSupport.arapackBinary, ["verify", dst + "/" + artifact, "--signature", dst + "/" + signature,
                                                                    "--public-key", scratch + "/pub.pem"])
            XCTAssertEqual(v.status, 0, artifact + ": " + v.stdout + v.stderr)
        }
        XCTAssertTrue(try String(contentsOfFile: dst + "/AraFusion-AR-tiny/README.md", encoding: .utf8).contains("## Every form of this release"))
        let listed = try XCTUnwrap(TestSupport.loadJSON(dst + "/release.json")["artifacts"]?.elements?.first?["files"]?.elements?.compactMap { $0["path"]?.stringValue })
        XCTAssertTrue(listed.contains("AraFusion-AR-tiny/model.sig"), "\(listed)")
        // The whole set verifies under release.json's signature (which holds every other file's SHA-256).
        let whole = try TestSupport.run(TestSupport.arapackBinary, ["verify", dst, "--signature", dst + "/release.json.sig",
                                                                    "--public-key", scratch + "/pub.pem"])
        XCTAssertEqual(whole.status, 0, whole.stdout + whole.stderr)
        XCTAssertTrue(whole.stdout.contains("ok    signature: 1 file of release.json signed under"), whole.stdout)
        // release.json is signed with the rest, and its signature fails once a byte of it changes.
        let key = try ECDSAKey.publicKey(path: scratch + "/pub.pem")
        let index = dst + "/release.json", signature = dst + "/release.json.sig"
        XCTAssertNoThrow(try ModelSignature.verify(folder: index, signaturePath: signature, key: key))
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: index))
        bytes[bytes.count / 2] ^= 1
        try bytes.write(to: URL(fileURLWithPath: index))
        XCTAssertThrowsError(try ModelSignature.verify(folder: index, signaturePath: signature, key: key))
        let changed = try TestSupport.run(TestSupport.arapackBinary, ["verify", dst, "--signature", dst + "/release.json.sig",
                                                                      "--public-key", scratch + "/pub.pem"])
        XCTAssertEqual(changed.status, 1, changed.stdout + changed.stderr)
        XCTAssertTrue(changed.stdout.contains("FAIL  signature:"), changed.stdout)
    }

    /// `verify DST` checks a whole release set: release.json, every file it lists (present, regular, its size and
    /// SHA-256, nothing unlisted), then each artifact and archive as `verify DST/NAME` does, its checks named after it.
    func testVerifyChecksAWholeReleaseSet() throws {
        let dst = scratch + "/release"
        let r = try release([source, dst, "--repo-id", "me/tiny", "--tokenizer", TestSupport.fixture("gguf/metaspace"),
                             "--artifact", "dtype=bf16,archive", "--artifact", "dtype=int8", "--artifact", "to=gguf,dtype=q8_0"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        func verify(_ extra: String...) throws -> TestSupport.ProcessResult {
            try TestSupport.run(TestSupport.arapackBinary, ["verify", dst] + extra)
        }
        let ok = try verify("--report", scratch + "/report.json")
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)
        try TestSupport.validateAgainstSchema("verify-report.schema.json", [scratch + "/report.json"])
        let names = try XCTUnwrap(TestSupport.loadJSON(scratch + "/report.json")["structural"]?["checks"]?.elements?.compactMap { $0["name"]?.stringValue })
        for expected in ["release.json", "files", "tiny: manifest", "tiny: NaN/Inf", "tiny.tar.zst: manifest", "tiny-int8: tensors",
                         "tiny-GGUF/tiny-Q8_0.gguf: metadata ⇄ tensors"] {
            XCTAssertTrue(names.contains(expected), "\(expected) in \(names)")
        }
        XCTAssertEqual(names.filter { $0.hasPrefix("tiny.tar.zst: ") }.count, names.filter { $0.hasPrefix("tiny: ") }.count, "the archive as the folder")
        // The commands that read one model name the set's artifacts.
        for command in ["inspect", "run", "eval"] {
            let r = try TestSupport.run(TestSupport.arapackBinary, [command, dst] + (command == "run" ? ["--ids", "1,2"] : command == "eval" ? ["--tokens", TestSupport.fixture("tokens/heldout_u32.npy")] : []))
            XCTAssertEqual(r.status, 2, command + ": " + r.stderr)
            XCTAssertTrue(r.stderr.contains("\(dst): unrecognised format: a release set (release.json lists its artifacts): name one of them, e.g. \(dst)/tiny, \(dst)/tiny-int8"), command + ": " + r.stderr)
        }

        // One flipped byte in the GGUF file's tensor data, a file added, one removed, one replaced by a link.
        let gguf = dst + "/tiny-GGUF/tiny-Q8_0.gguf"
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: gguf))
        bytes[bytes.count - 100] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: gguf))
        try writeText("mine\n", to: dst + "/tiny-int8/notes.txt")
        XCTAssertEqual(unlink(dst + "/tiny.tar.zst.sha256"), 0)
        let bad = try verify()
        XCTAssertEqual(bad.status, 1, bad.stdout + bad.stderr)
        for line in ["FAIL  files: ", "tiny.tar.zst.sha256: missing", "tiny-GGUF/tiny-Q8_0.gguf: SHA-256 ", "tiny-int8/notes.txt: not listed in release.json",
                     "FAIL  tiny-int8: manifest: "] {
            XCTAssertTrue(bad.stdout.contains(line), line + " in " + bad.stdout)
        }
        XCTAssertTrue(bad.stderr.hasPrefix("arapack verify: \(dst): files: "), bad.stderr)
        XCTAssertEqual(unlink(dst + "/tiny-int8/notes.txt"), 0)
        XCTAssertEqual(symlink(dst + "/tiny.tar.zst", dst + "/tiny.tar.zst.sha256"), 0)
        let linked = try verify()
        XCTAssertEqual(linked.status, 1)
        XCTAssertTrue(linked.stdout.contains("tiny.tar.zst.sha256 is a symbolic link"), linked.stdout)
        XCTAssertFalse(linked.stdout.contains("tiny: manifest"), "nothing read past a link")
        // A FIFO in place of a bundle's file: named, never opened (the run would block).
        XCTAssertEqual(unlink(dst + "/tiny.tar.zst.sha256"), 0)
        try FileManager.default.moveItem(atPath: dst + "/tiny-int8/config.json", toPath: scratch + "/config.json")
        XCTAssertEqual(mkfifo(dst + "/tiny-int8/config.json", 0o644), 0)
        let fifo = try verify()
        XCTAssertEqual(fifo.status, 1, fifo.stdout + fifo.stderr)
        XCTAssertTrue(fifo.stdout.contains("tiny-int8/config.json"), fifo.stdout)
        XCTAssertEqual(unlink(dst + "/tiny-int8/config.json"), 0)

        // A release.json naming a file outside DST: refused by name, nothing outside read.
        var index = try String(contentsOfFile: dst + "/release.json", encoding: .utf8)
        index = index.replacingOccurrences(of: "\"path\": \"tiny-int8/config.json\"", with: "\"path\": \"tiny-int8/../../../etc/passwd\"")
        try writeText(index, to: dst + "/release.json")
        let escaping = try verify()
        XCTAssertEqual(escaping.status, 1, escaping.stdout + escaping.stderr)
        XCTAssertTrue(escaping.stdout.contains("FAIL  release.json: tiny-int8: file \"tiny-int8/../../../etc/passwd\" is not a path inside the release"), escaping.stdout)
        // Sizes that overflow when added: a problem, not a trap.
        let huge = """
            {"format": "arapack-release", "arapack_version": "x", "model_type": "arafusion_ar", "parameter_count": 1, "source": "s",
             "source_sha256": null, "artifacts": [{"name": "tiny", "form": "bundle", "dtype": "bfloat16", "bytes": 1, "parity": null,
             "files": [{"path": "tiny/a", "size": 9223372036854775807, "sha256": "\(String(repeating: "0", count: 64))"},
                       {"path": "tiny/b", "size": 9223372036854775807, "sha256": "\(String(repeating: "0", count: 64))"}]}]}
            """
        try writeText(huge, to: dst + "/release.json")
        let overflowing = try verify()
        XCTAssertEqual(overflowing.status, 1, overflowing.stdout + overflowing.stderr)
        XCTAssertTrue(overflowing.stdout.contains("FAIL  release.json: tiny: bytes 1 is not the sum of its files' sizes"), overflowing.stdout)
        XCTAssertTrue(overflowing.stdout.contains("tiny/a: missing"), overflowing.stdout)
        try writeText("{\"format\": 3}", to: dst + "/release.json")
        let unreadable = try verify()
        XCTAssertEqual(unreadable.status, 2, unreadable.stdout + unreadable.stderr)
        XCTAssertTrue(unreadable.stderr.contains("\(dst)/release.json: format"), unreadable.stderr)
        let parity = try verify("--parity", "--against", source)
        XCTAssertEqual(parity.status, 64, parity.stderr)
        XCTAssertTrue(parity.stderr.contains("is a release set: parity and golden logits compare one artifact"), parity.stderr)
    }

    /// The real model_signing accepts release.json's signature (and refuses it under another file's digest).
    func testModelSigningVerifiesTheSignedReleaseList() throws {
        let python = try TestSupport.interopPython(importing: ["model_signing"])
        for args in [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", scratch + "/key.pem"],
                     ["pkey", "-in", scratch + "/key.pem", "-pubout", "-out", scratch + "/pub.pem"]] {
            XCTAssertEqual(try TestSupport.run("/usr/bin/openssl", args).status, 0)
        }
        let dst = scratch + "/release"
        let r = try release([source, dst, "--artifact", "to=gguf,dtype=q8_0", "--tokenizer", TestSupport.fixture("gguf/bytelevel"),
                             "--sign", scratch + "/key.pem"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        func modelSigning() throws -> TestSupport.ProcessResult {
            try TestSupport.run(python, ["-m", "model_signing", "verify", "key", dst + "/release.json", "--signature", dst + "/release.json.sig",
                                         "--public_key", scratch + "/pub.pem"])
        }
        let accepted = try modelSigning()
        XCTAssertEqual(accepted.status, 0, accepted.stdout + accepted.stderr)
        XCTAssertTrue(accepted.stdout.contains("Verification succeeded"), accepted.stdout + accepted.stderr)
        try writeText(try String(contentsOfFile: dst + "/release.json", encoding: .utf8) + " ", to: dst + "/release.json.new")
        XCTAssertEqual(rename(dst + "/release.json.new", dst + "/release.json"), 0)
        XCTAssertNotEqual(try modelSigning().status, 0, "a changed release.json fails model_signing's check")
    }

    /// SIGTERM at any moment: nothing at DST and no temporaries (exit 143), or the whole release (exit 0).
    func testAnInterruptedReleaseLeavesNothingOrTheWholeSet() throws {
        var outcomes = (absent: 0, complete: 0)
        for i in 0..<6 {
            let parent = scratch + "/run\(i)"
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestSupport.arapackBinary)
            process.arguments = ["release", source, parent + "/out", "--parity", "--artifact", "dtype=bf16,archive", "--artifact", "dtype=int8",
                                 "--artifact", "to=gpt2", "--quiet"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(30_000 + i * 90_000))
            process.terminate()
            process.waitUntilExit()
            switch (process.terminationReason, process.terminationStatus) {
            case (.exit, 143), (.uncaughtSignal, SIGTERM):
                XCTAssertEqual(try directoryEntries(parent), [], "run \(i): nothing at DST, no temporaries")
                outcomes.absent += 1
            case (.exit, 0):
                XCTAssertEqual(try directoryEntries(parent + "/out").count, 6, "run \(i)")
                XCTAssertTrue(pathExists(parent + "/out/release.json"), "run \(i)")
                outcomes.complete += 1
            case let other: XCTFail("run \(i): \(other)")
            }
        }
        XCTAssertGreaterThan(outcomes.absent, 0, "some runs were interrupted mid-way")
    }

    /// On a terminal each stage's line says which artifact of how many it is working on; never otherwise.
    func testProgressNamesTheArtifactOnATerminal() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("script(1) is needed for a pseudo-terminal") }
        let shown = try TestSupport.run("/usr/bin/script", ["-qec", "\(TestSupport.arapackBinary) release \(source) \(scratch)/r --parity "
                                                            + "--artifact dtype=bf16,archive --artifact dtype=int8", "/dev/null"]).stdout
        // The overall bar: two artifacts and the cards make three steps; it starts empty and the archive is in the third.
        let empty = "▕" + String(repeating: " ", count: 20) + "▏ 0%"
        XCTAssertTrue(shown.contains("arapack: \(empty) [1/2 AraFusion-AR-135K] writing weights"), shown)
        XCTAssertTrue(shown.contains("▏ 33% [2/2 AraFusion-AR-135K-int8] parity"), shown)
        XCTAssertNotNil(shown.range(of: "▏ (6[6-9]|[7-9][0-9])% \\[AraFusion-AR-135K: card, signature, archive\\] writing AraFusion-AR-135K.tar.zst",
                                    options: .regularExpression), shown)
        let piped = try release([source, scratch + "/p", "--artifact", "dtype=int8"])
        XCTAssertFalse(piped.stdout.contains("arapack: [") || piped.stderr.contains("arapack: ["), piped.stderr)
    }

    /// A plan's mistakes are usage errors naming the file and the line, before anything is read (the source here
    /// does not exist) and with nothing written.
    func testPlanMistakesNameTheirLineBeforeAnythingIsRead() throws {
        let cases: [(text: String, line: Int, fragment: String)] = [
            ("[[artifact]]\ndtyp = \"bf16\"", 3, "Unknown option '--dtyp'"),
            ("[[artifact]]\ndtype = \"int9\"", 3, "The value 'int9' is invalid for '--dtype <dtype>'. Please provide one of the following: f32 bf16"),
            ("[[artifact]]\nto = \"gguf\"\narchive = true", 4, "--archive applies to bundles only"),
            ("archive = true\n[[artifact]]\nto = \"gpt2\"\nint4_group_size = 32", 5, "--int4-group-size applies to --dtype int4"),
            ("[[artifact]]\ndtype = \"int8\"\ntokenizer = \"t\"", 4, "tokenizer belongs to the whole release"),
            ("[[artifact]]\ndtype = \"int8\"\n[[artifact]]\ndtype = \"int8\"", 4, "artifacts 1 and 2 would both be written as NAME-int8"),
            ("[[artifact]]\nforce = true", 3, "force is not a release key"),
            ("[artifact]\nto = \"gguf\"", 2, "[artifact] is not a table a plan has"),
            ("repo_id = \"AraFus/x\"\nrepo_id = \"AraFus/y\"", 3, "repo_id is set twice"),
            ("tokens = \"unterminated", 2, "a string without its closing quote"),
            ("parity = yes", 2, "yes is not a value a plan takes"),
            ("keep = [\"a\", 3]", 2, "an array in a plan holds strings"),
            ("[[artifact]]\nmax_mean_kl = 1e-3\nto = \"torch\"", 4, "a release holds bundle, gpt2 and gguf artifacts"),
        ]
        for c in cases {
            try writeText("source = \"\(scratch)/no-such.pt\"\n" + c.text + "\n", to: scratch + "/plan.toml")
            let r = try release(["--plan", scratch + "/plan.toml", scratch + "/out"])
            XCTAssertEqual(r.status, 64, "\(c.text): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("arapack release: error: \(scratch)/plan.toml:\(c.line): "), "\(c.text): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(c.fragment), "\(c.text): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertFalse(pathExists(scratch + "/out"))
        }
        // Hostile plans: an integer past Int64, a file past 1 MiB, a FIFO (refused unread, exit 2), a directory.
        try writeText("parity = 99999999999999999999999\n", to: scratch + "/plan.toml")
        var h = try release(["--plan", scratch + "/plan.toml", scratch + "/out"])
        XCTAssertEqual(h.status, 64, h.stderr)
        XCTAssertTrue(h.stderr.contains("plan.toml:1: 99999999999999999999999 is not a value a plan takes"), h.stderr)
        try writeText("# " + String(repeating: "x", count: 1 << 20) + "\n", to: scratch + "/plan.toml")
        h = try release(["--plan", scratch + "/plan.toml", scratch + "/out"])
        XCTAssertEqual(h.status, 64, h.stderr)
        XCTAssertTrue(h.stderr.contains("plan.toml: larger than 1048576 bytes"), h.stderr)
        XCTAssertEqual(mkfifo(scratch + "/fifo.toml", 0o644), 0)
        h = try release(["--plan", scratch + "/fifo.toml", scratch + "/out"])
        XCTAssertEqual(h.status, 2, h.stderr)
        XCTAssertTrue(h.stderr.contains(scratch + "/fifo.toml"), h.stderr)
        h = try release(["--plan", scratch, scratch + "/out"])
        XCTAssertEqual(h.status, 2, h.stderr)
        XCTAssertFalse(pathExists(scratch + "/out"))

        // Flags make a plan too, and --print-plan shows it; read back from a file it is the same plan.
        let r = try release([source, scratch + "/out", "--repo-id", "AraFus/AraFusion-AR-tiny", "--parity", "--artifact", "to=gguf,dtype=q8_0",
                             "--artifact", "dtype=int4,int4_group_size=32,keep=model.transformer.layers.1.*", "--print-plan"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, """
            source = "\(source)"
            repo_id = "AraFus/AraFusion-AR-tiny"
            parity = true

            [[artifact]]
            to = "gguf"
            dtype = "q8_0"

            [[artifact]]
            dtype = "int4"
            int4_group_size = 32
            keep = "model.transformer.layers.1.*"

            """)
        try writeText(r.stdout, to: scratch + "/printed.toml")
        let back = try release(["--plan", scratch + "/printed.toml", "--print-plan"])
        XCTAssertEqual(back.stdout, r.stdout)
        XCTAssertFalse(pathExists(scratch + "/out"))
    }

    /// One artifact over its parity limit: nothing at DST, no temporaries beside it, the artifact and the reason named,
    /// exit 1 as convert's; an existing DST is refused (exit 2) and left as it was.
    func testAFailedArtifactLeavesNothing() throws {
        try writeText(plan("max_mean_kl = 1e-12"), to: scratch + "/plan.toml")
        let dst = scratch + "/release"
        let r = try release(["--plan", scratch + "/plan.toml", dst])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("arapack release: AraFusion-AR-tiny-GGUF/AraFusion-AR-tiny-Q8_0.gguf: parity against \(source) failed: mean KL"), r.stderr)
        XCTAssertEqual(try directoryEntries(scratch), ["plan.toml"], "nothing at DST, no temporaries")
        XCTAssertFalse(r.stdout.contains(": bundle"), "no line for the bundles written before the failure, which never land: " + r.stdout)

        // What a form refuses of the model stops the release before the first artifact is written (no artifact's
        // line on stdout): a tokenizer llama.cpp reads otherwise (the trained twin's NFKC one), a group size that does
        // not divide the 64 columns.
        for (artifacts, named, reason) in [
            (["dtype=bf16,archive", "dtype=int8", "to=gguf,dtype=q8_0"], "tiny-GGUF/tiny-Q8_0.gguf", "llama.cpp would not tokenize text as this tokenizer does: normalizer NFKC"),
            (["dtype=bf16", "dtype=int4,int4_group_size=128"], "tiny-int4", "--int4-group-size 128 does not divide the 64 columns"),
        ] {
            let refused = try release([source, dst, "--repo-id", "me/tiny", "--tokenizer", TestSupport.fixture("trained/tokenizer")]
                                      + artifacts.flatMap { ["--artifact", $0] })
            XCTAssertEqual(refused.status, 2, refused.stderr)
            XCTAssertTrue(refused.stderr.hasPrefix("arapack release: error: \(named): "), refused.stderr)
            XCTAssertTrue(refused.stderr.contains(reason), refused.stderr)
            XCTAssertEqual(refused.stdout, "", "no artifact was written first")
            XCTAssertEqual(try directoryEntries(scratch), ["plan.toml"])
        }

        try FileManager.default.createDirectory(atPath: dst, withIntermediateDirectories: false)
        try writeText("mine\n", to: dst + "/notes.txt")
        let exists = try release([source, dst])
        XCTAssertEqual(exists.status, 2, exists.stderr)
        XCTAssertTrue(exists.stderr.contains("\(dst) already exists"), exists.stderr)
        XCTAssertEqual(try directoryEntries(dst), ["notes.txt"])
    }
}
