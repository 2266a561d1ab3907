import ArapackFormats
import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// `arapack convert` and `arapack verify` as users and CI scripts run them: exit codes, one-line errors,
/// DST atomic and never overwritten without --force, interrupted runs leaving nothing behind.
final class ConvertCommandTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let trainingDict = TestSupport.fixture("torch/valid/training_dict.pt")

    func testConvertThenVerifyAndRefuseToOverwrite() throws {
        let dst = scratch + "/release"
        var r = try TestSupport.arapack("convert", trainingDict, dst, "--tokenizer", TestSupport.fixture("tokenizer/valid"), "--archive")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("wrote \(dst) (bundle): arafusion_ar, 2 layers, d 32, vocab 128, 21,760 parameters, tied"), r.stdout)
        XCTAssertEqual(r.stderr, "", "quiet when standard error is not a terminal")
        XCTAssertEqual(try directoryEntries(scratch), ["release", "release.tar.zst", "release.tar.zst.sha256"])
        for target in [dst, dst + ".tar.zst"] {
            r = try TestSupport.arapack("verify", target)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.hasSuffix("passed\n"), r.stdout)
        }
        let before = try SHA256.hex(ofFile: dst + "/config.json")
        r = try TestSupport.arapack("convert", trainingDict, dst, "--dtype", "bf16")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "arapack convert: error: \(dst) already exists; pass --force to replace it\n")
        XCTAssertEqual(try SHA256.hex(ofFile: dst + "/config.json"), before)
        r = try TestSupport.arapack("convert", trainingDict, dst, "--dtype", "bf16", "--force")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.loadJSON(dst + "/config.json")["torch_dtype"]?.stringValue, "bfloat16")
        XCTAssertEqual(try directoryEntries(scratch), ["release", "release.tar.zst", "release.tar.zst.sha256"], "no temporaries left")
        // The bundle without its archive, as a run killed between their renames leaves it.
        for file in ["release.tar.zst", "release.tar.zst.sha256"] { removeTree(scratch + "/" + file) }
        r = try TestSupport.arapack("convert", trainingDict, dst, "--archive")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "arapack convert: error: \(dst) already exists but \(dst).tar.zst does not (a run stopped between the two?); pass --force to write both again\n")
        XCTAssertEqual(try directoryEntries(scratch), ["release"])
    }

    func testFailedConversionLeavesNothing() throws {
        let dst = scratch + "/out"
        for (source, fragment) in [(TestSupport.fixture("release/valid/untied.pt"), "pass --allow-untied"),
                                   (TestSupport.fixture("dcp/valid/full_shard"), "pass --config with n_heads"),
                                   (TestSupport.fixture("torch/hostile/reduce_os_system.pt"), "system"),
                                   (scratch + "/missing.pt", "no such file")] {
            let r = try TestSupport.arapack("convert", source, dst, "--archive")
            XCTAssertEqual(r.status, 2, source)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(fragment), r.stderr)
            XCTAssertEqual(try directoryEntries(scratch), [], "nothing at DST, no temporaries")
        }
        // A failure in the middle of writing (f16 overflow of one tensor) also leaves nothing.
        let source = try TorchCheckpoint(path: trainingDict)
        var tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
        let i = tensors.firstIndex { $0.name == "ln_f.bias" }!
        tensors[i].tensor = try Tensor(float32: [Float](repeating: 1e6, count: 32), shape: [32])
        let big = scratch + "/big.pt"
        try TorchCheckpointWriter.write(stateDict: tensors, extra: [.init("config", source.summary.config!)], to: big)
        let r = try TestSupport.arapack("convert", big, dst, "--dtype", "f16", "--archive")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("exceed the float16 range"), r.stderr)
        XCTAssertEqual(try directoryEntries(scratch), ["big.pt"])
    }

    func testUsageErrorsExit64() throws {
        for args in [["convert", trainingDict, scratch + "/x", "--to", "torch", "--archive"],
                     ["convert", trainingDict, scratch + "/x", "--max-shard-size", "lots"],
                     ["convert", trainingDict, scratch + "/x", "--dtype", "f8"],
                     ["convert", trainingDict, scratch + "/x", "--to", "onnx"],
                     ["verify"]] {
            let r = try TestSupport.run(TestSupport.arapackBinary, args)
            XCTAssertEqual(r.status, 64, "\(args): \(r.stderr)")
        }
        let help = try TestSupport.arapack("convert", "--help")
        XCTAssertEqual(help.status, 0)
        for option in ["--to", "--dtype", "--config", "--tokenizer", "--max-shard-size", "--archive", "--allow-untied", "--force", "--quiet"] {
            XCTAssertTrue(help.stdout.contains(option), option)
        }
    }

    func testVerifyExitCodes() throws {
        let dst = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, dst).status, 0)
        try writeText("{}", to: dst + "/generation_config.json")
        let r = try TestSupport.arapack("verify", dst)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("FAIL  manifest: generation_config.json has 2 bytes"), r.stdout)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
        XCTAssertTrue(r.stderr.hasPrefix("arapack verify: \(dst): manifest: generation_config.json"), r.stderr)
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/nothing").status, 2)
        try writeText("not zstd", to: scratch + "/bad.tar.zst")
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/bad.tar.zst").status, 2)
    }

    func testEveryTargetAndSourceKindThroughTheCommandLine() throws {
        let bundle = scratch + "/b"
        XCTAssertEqual(try TestSupport.arapack("convert", TestSupport.fixture("release/valid/mdlm_relu.pt"), bundle).status, 0)
        var r = try TestSupport.arapack("convert", bundle, scratch + "/back.pt", "--to", "torch")
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try TestSupport.arapack("convert", bundle, scratch + "/dcp", "--to", "dcp")
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try TestSupport.arapack("convert", scratch + "/dcp", scratch + "/b2", "--config", bundle + "/config.json")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try SHA256.hex(ofFile: bundle + "/model.safetensors"), try SHA256.hex(ofFile: scratch + "/b2/model.safetensors"))
        r = try TestSupport.arapack("convert", bundle + "/model.safetensors", scratch + "/b3", "--max-shard-size", "64KiB")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try directoryEntries(scratch + "/b3").contains("model.safetensors.index.json"))
        XCTAssertEqual(try TestSupport.arapack("verify", scratch + "/b3").status, 0)
        // A shard index naming a shard that is gone.
        let index = try String(contentsOfFile: scratch + "/b3/model.safetensors.index.json", encoding: .utf8)
        try writeText(index.replacingOccurrences(of: "model-00001-of-", with: "model-00009-of-"), to: scratch + "/b3/model.safetensors.index.json")
        r = try TestSupport.arapack("verify", scratch + "/b3")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("to a missing shard \"model-00009-of-"), r.stdout)

        // From an archive: unpacked privately, converted, the bundle's tokenizer kept, nothing left in TMPDIR.
        let tmp = scratch + "/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        // What a run killed while unpacking leaves, and a folder of a live process (this one), left alone.
        let live = tmp + "/arapack-extract-\(getpid())-Live00"
        for folder in [tmp + "/arapack-extract-999999999-Dead00", live] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
            try writeText("partial", to: folder + "/model.safetensors")
        }
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, scratch + "/t", "--tokenizer", TestSupport.fixture("tokenizer/valid"), "--archive").status, 0)
        r = try TestSupport.run(TestSupport.arapackBinary, ["convert", scratch + "/t.tar.zst", scratch + "/from-archive"], environment: ["TMPDIR": tmp])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try BundleFolder.files(scratch + "/t"), try BundleFolder.files(scratch + "/from-archive"))
        for name in try BundleFolder.files(scratch + "/t") where name != "manifest.json" && name != "README.md" {
            XCTAssertEqual(try SHA256.hex(ofFile: scratch + "/t/" + name), try SHA256.hex(ofFile: scratch + "/from-archive/" + name), name)
        }
        XCTAssertEqual(try TestSupport.loadJSON(scratch + "/from-archive/manifest.json")["source"]?["format"]?.stringValue, "tar.zst")
        XCTAssertEqual(try directoryEntries(tmp), ["arapack-extract-\(getpid())-Live00"])
    }

    /// Archives made twice from the same input are byte-identical; SOURCE_DATE_EPOCH sets the mtime.
    func testArchivesAreReproducibleWithSourceDateEpoch() throws {
        var digests: [String] = []
        XCTAssertEqual(try TestSupport.arapack("convert", trainingDict, scratch + "/missing/b").stderr,
                       "arapack convert: error: \(scratch)/missing: the folder for DST does not exist\n")
        for run in 0..<2 {
            try FileManager.default.createDirectory(atPath: scratch + "/run\(run)", withIntermediateDirectories: false)
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", trainingDict, scratch + "/run\(run)/arafusion-tiny", "--archive"],
                                        environment: ["SOURCE_DATE_EPOCH": "1700000000"])
            XCTAssertEqual(r.status, 0, r.stderr)
            digests.append(try SHA256.hex(ofFile: scratch + "/run\(run)/arafusion-tiny.tar.zst"))
        }
        XCTAssertEqual(digests[0], digests[1])
        let listing = try TestSupport.run("/bin/sh", ["-c", "zstd -dc '\(scratch)/run0/arafusion-tiny.tar.zst' | tar --utc -tvf - | head -1"])
        XCTAssertTrue(listing.stdout.contains("2023-11-14 22:13"), listing.stdout)
    }

    /// SIGTERM at many points of a conversion: DST is absent (and no temporary remains) or complete and verified.
    /// An ignored SIGHUP (nohup) does not stop one.
    func testInterruptedConversionsLeaveNothingOrACompleteBundle() throws {
        let source = scratch + "/large.pt"
        try Self.writeLargeCheckpoint(source)
        var outcomes = (absent: 0, complete: 0, cleanedUp: 0)
        for i in 0..<8 {
            let dst = scratch + "/out\(i)"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: TestSupport.arapackBinary)
            process.arguments = ["convert", source, dst, "--dtype", "bf16", "--quiet"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(useconds_t(20_000 + i * 40_000))
            process.terminate()
            process.waitUntilExit()
            let leftovers = try directoryEntries(scratch).filter { $0.contains("arapack-tmp") }
            XCTAssertEqual(leftovers, [], "run \(i)")
            // Interrupted, it exits with 128 + SIGTERM once its cleanup thread has run; only a signal that
            // lands before main() has set that up kills it outright (and then it has written nothing).
            switch (process.terminationReason, process.terminationStatus) {
            case (.exit, 143): outcomes.cleanedUp += 1
            case (.exit, 0): XCTAssertTrue(pathExists(dst), "run \(i)")
            case (.uncaughtSignal, SIGTERM): XCTAssertFalse(pathExists(dst), "run \(i)")
            case let other: XCTFail("run \(i): \(other)")
            }
            if pathExists(dst) {
                XCTAssertEqual(try TestSupport.arapack("verify", dst).status, 0, "run \(i): a DST that exists is complete")
                outcomes.complete += 1
            } else {
                outcomes.absent += 1
            }
        }
        XCTAssertGreaterThan(outcomes.absent, 0, "some runs were interrupted mid-way")
        XCTAssertGreaterThan(outcomes.cleanedUp, 0, "some runs were interrupted after startup")

        // A hangup ignored when the run started (nohup) stays ignored: the conversion finishes.
        let dst = scratch + "/nohup"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "trap '' HUP; exec '\(TestSupport.arapackBinary)' convert '\(source)' '\(dst)' --quiet"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        usleep(150_000)
        kill(process.processIdentifier, SIGHUP)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(try TestSupport.arapack("verify", dst).status, 0)
    }

    /// On a terminal (a pseudo-terminal from script(1)) a progress line is drawn and cleared; --quiet silences it.
    func testProgressOnATerminalOnly() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { throw XCTSkip("script(1) is needed for a pseudo-terminal") }
        func onTerminal(_ extra: String, _ dst: String) throws -> String {
            try TestSupport.run("/usr/bin/script", ["-qec", "\(TestSupport.arapackBinary) convert \(trainingDict) \(scratch)/\(dst) --tokenizer \(TestSupport.fixture("tokenizer/valid")) \(extra)", "/dev/null"]).stdout
        }
        let shown = try onTerminal("", "p1")
        XCTAssertTrue(shown.contains("\r\u{1B}[Karapack: writing weights"), shown)
        XCTAssertTrue(shown.contains("arapack: hashing the source"), shown)
        XCTAssertTrue(shown.contains("\r\u{1B}[Kwrote \(scratch)/p1"), "the line is cleared before the summary: \(shown)")
        let quiet = try onTerminal("--quiet", "p2")
        XCTAssertFalse(quiet.contains("arapack: writing"), quiet)
        XCTAssertTrue(quiet.hasPrefix("wrote \(scratch)/p2"), quiet)
    }

    /// Quiet by default, details on request: an int8 conversion with parity prints the parity report, a one-line
    /// quantization summary and what was written; `--details` adds the per-tensor table (short numbers, grouped
    /// bytes); `--quiet` keeps only the parity verdict and the written line. The manifest and card keep both reports.
    func testQuietByDefaultDetailsOnRequest() throws {
        let source = TestSupport.fixture("golden/ar_gelu.pt")
        let quiet = try TestSupport.arapack("convert", source, scratch + "/q", "--dtype", "int8", "--parity", "--quiet")
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        let lines = quiet.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, quiet.stdout)
        XCTAssertTrue(lines[0].hasPrefix("parity passed (int8, thresholds int8): max |Δlogit| "), quiet.stdout)
        XCTAssertTrue(lines[1].hasPrefix("wrote \(scratch)/q (bundle)"), quiet.stdout)
        XCTAssertTrue(try String(contentsOfFile: scratch + "/q/README.md", encoding: .utf8).contains("## Quantization"))
        let plain = try TestSupport.arapack("convert", source, scratch + "/l", "--dtype", "int8", "--parity")
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("\nparity passed\n"), plain.stdout)
        let summary = plain.stdout.split(separator: "\n").filter { $0.hasPrefix("quantization: ") }
        XCTAssertEqual(summary.count, 1, plain.stdout)
        XCTAssertTrue(summary.first?.hasSuffix(" bytes (--details for every tensor)") == true, plain.stdout)
        XCTAssertFalse(plain.stdout.contains("bytes before"), "no table without --details")
        let detailed = try TestSupport.arapack("convert", source, scratch + "/d", "--dtype", "int8", "--details")
        XCTAssertEqual(detailed.status, 0, detailed.stderr)
        let table = detailed.stdout.split(separator: "\n")
        XCTAssertTrue(table.first?.hasPrefix("tensor ") == true && table[0].contains("bytes before"), detailed.stdout)
        // The manifest's records, printed in short form: no cell carries more than three significant digits.
        let records = try TestSupport.loadJSON(scratch + "/d/manifest.json")["quantization"]?["tensors"]?.elements ?? []
        XCTAssertEqual(table.count, records.count + 2, "header, one row per tensor, the written line")
        for row in table.dropFirst().dropLast() {
            let cells = row.split(separator: " ", omittingEmptySubsequences: true)
            let mantissa = cells[1].split(separator: "e")[0].filter(\.isNumber).drop { $0 == "0" }
            XCTAssertLessThanOrEqual(mantissa.count, 3, String(row))
        }
    }

    func testStaleTemporariesOfDeadRunsAreRemoved() throws {
        // What a run killed while writing, or between its renames, leaves: the bundle, the archive, its sidecar.
        let stale = scratch + "/.b.arapack-tmp-999999999-1"
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: false)
        try writeText("partial", to: stale + "/model.safetensors")
        let staleFiles = [scratch + "/.b.tar.zst.arapack-tmp-999999999-2", scratch + "/.b.tar.zst.sha256.arapack-tmp-999999999-3"]
        for file in staleFiles { try writeText("partial", to: file) }
        let r = try TestSupport.arapack("convert", trainingDict, scratch + "/b")
        XCTAssertEqual(r.status, 0, r.stderr)
        for path in [stale] + staleFiles { XCTAssertTrue(r.stderr.contains("removed \(path), left by an interrupted run"), r.stderr) }
        XCTAssertEqual(try directoryEntries(scratch), ["b"])
    }

    /// A training dict of a wider tiny model (vocab 32,768 × d 256, ~35 MB) so a conversion takes long enough to interrupt.
    static func writeLargeCheckpoint(_ path: String) throws {
        let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        var config = source.summary.config!.members!
        let v = 32_768, d = 256
        for (key, value) in [("vocab_size", v), ("d_model", d), ("d_ff", 512)] { config[config.firstIndex { $0.key == key }!].value = .int(value) }
        var rng = SystemRandomNumberGenerator()
        func random(_ shape: [Int]) throws -> Tensor {
            try Tensor(float32: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &rng) }, shape: shape)
        }
        let shapes: [String: [Int]] = [
            "token_embedding.weight": [v, d], "position_embedding.weight": [16, d], "ln_f.weight": [d], "ln_f.bias": [d],
        ]
        var tensors: [(name: String, tensor: Tensor)] = try shapes.sorted { $0.key < $1.key }.map { ($0.key, try random($0.value)) }
        for i in 0..<2 {
            let p = "transformer.layers.\(i)."
            for (n, s) in [("self_attn.in_proj_weight", [3 * d, d]), ("self_attn.in_proj_bias", [3 * d]), ("self_attn.out_proj.weight", [d, d]),
                           ("self_attn.out_proj.bias", [d]), ("linear1.weight", [512, d]), ("linear1.bias", [512]), ("linear2.weight", [d, 512]),
                           ("linear2.bias", [d]), ("norm1.weight", [d]), ("norm1.bias", [d]), ("norm2.weight", [d]), ("norm2.bias", [d])] {
                tensors.append((p + n, try random(s)))
            }
        }
        tensors.append(("lm_head.weight", tensors.first { $0.name == "token_embedding.weight" }!.tensor))
        try TorchCheckpointWriter.write(stateDict: tensors, extra: [.init("config", .object(config)), .init("step", .int(1))], to: path)
    }
}
