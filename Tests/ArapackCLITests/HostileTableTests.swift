import ArapackFormats
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// Every malformed fixture of the project in one table (each generator's hostile.json: file → the message
/// fragment arapack must print), run through the main job, `arapack convert`: exit 2, one line on stderr
/// naming the problem, nothing at DST and no temporary left.
final class HostileTableTests: XCTestCase {
    func testEveryMalformedFixtureExitsTwoNamingTheProblem() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        try writeText("{\"n_heads\": 4, \"activation\": \"gelu\", \"causal\": true, \"layer_norm_eps\": 1e-5}", to: scratch + "/heads.json")
        let trainingDict = TestSupport.fixture("torch/valid/training_dict.pt")
        // (table, how a row becomes a convert command line)
        let tables: [(String, (String) -> [String])] = [
            ("safetensors", { [TestSupport.fixture("safetensors/hostile/" + $0)] }),
            ("torch", { [TestSupport.fixture("torch/hostile/" + $0)] }),
            ("dcp", { [TestSupport.fixture("dcp/hostile/" + $0), "--config", scratch + "/heads.json"] }),
            ("release", { [TestSupport.fixture("release/hostile/" + $0)] }),
            ("tokenizer", { [trainingDict, "--tokenizer", TestSupport.fixture("tokenizer/hostile/" + $0)] }),
            ("gguf", { [TestSupport.fixture("gguf/hostile/" + $0)] }),
        ]
        var rows = 0
        var peaks: [(String, Int)] = []
        for (table, command) in tables {
            let expected = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("\(table)/hostile.json")).members, table)
            for row in expected {
                let dst = scratch + "/out"
                let args = ["convert"] + command(row.key) + [dst, "--archive"]
                let r = try TestSupport.run(TestSupport.arapackBinary, args)
                let label = "\(table)/\(row.key)"
                XCTAssertEqual(r.status, 2, "\(label): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(label): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(row.value.stringValue!), "\(label): expected \"\(row.value.stringValue!)\" in: \(r.stderr)")
                XCTAssertTrue(r.stderr.hasPrefix("arapack convert: error: "), "\(label): \(r.stderr)")
                XCTAssertEqual(try directoryEntries(scratch), ["heads.json"], "\(label): nothing at DST, no temporaries")
                let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
                XCTAssertEqual(peak.status, 2, label)
                XCTAssertLessThan(peak.peakKiB, Self.peakBoundMiB << 10, "\(label): peak memory")
                removeTree(dst)
                peaks.append((label, peak.peakKiB))
                rows += 1
            }
        }
        XCTAssertEqual(rows, 48 + 18 + 7 + 7 + 5 + 26)
        print("largest peaks:", peaks.sorted { $0.1 > $1.1 }.prefix(3).map { "\($0.0) \($0.1 >> 10) MiB" })
    }

    /// What ROBUSTNESS.md states: every hostile row stays under this resident peak unless its row says otherwise.
    static let peakBoundMiB = 200

    /// Round two (issue 15, Fixtures/hostile): deep structures, bombs, parser differentials and forged output
    /// through convert (or the command a row names): exit 2 with one line naming the problem and nothing at DST,
    /// or exit 0 for files that are hostile but acceptable; every row under its peak-memory bound.
    func testRoundTwoFixtures() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        try writeText("{\"n_heads\": 4, \"activation\": \"gelu\", \"causal\": true, \"layer_norm_eps\": 1e-5}", to: scratch + "/heads.json")
        let rows = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("hostile/hostile.json")).members)
        XCTAssertEqual(rows.count, 12)
        for row in rows {
            let path = TestSupport.fixture("hostile/hostile/" + row.key)
            let dst = scratch + "/out"
            let extra = (row.value["args"]?.elements ?? []).map { $0.stringValue == "heads.json" ? scratch + "/heads.json" : $0.stringValue! }
            let args = row.value["command"].map { $0.elements!.map { $0.stringValue! } + [path] } ?? (["convert", path, dst] + extra)
            let r = try TestSupport.run("/usr/bin/timeout", ["120", TestSupport.arapackBinary] + args)
            if let fragment = row.value["message"]?.stringValue {
                XCTAssertEqual(r.status, 2, "\(row.key): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(row.key): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(fragment) && r.stderr.contains(row.key), "\(row.key): expected \"\(fragment)\" in: \(r.stderr)")
                XCTAssertFalse(pathExists(dst), "\(row.key): nothing at DST")
            } else {
                XCTAssertEqual(r.status, 0, "\(row.key): \(r.stderr)")
            }
            XCTAssertEqual(try directoryEntries(scratch).filter { $0 != "out" }, ["heads.json"], "\(row.key): no temporaries")
            removeTree(dst)
            let bound = row.value["peak_mib"]?.intValue ?? Self.peakBoundMiB
            let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
            XCTAssertEqual(peak.status, r.status, row.key)
            XCTAssertLessThan(peak.peakKiB, bound << 10, "\(row.key): peak memory \(peak.peakKiB >> 10) MiB, bound \(bound) MiB")
            removeTree(dst)
        }
        // Nothing a row's file named ran.
        XCTAssertFalse(pathExists("/tmp/arapack_pwned_by_fixture"))
    }

    /// Self-consistent bundles (the manifest re-hashed after each edit) with absurd values above the file
    /// formats: `convert` from them is exit 2 naming the file and the field, nothing written, memory bounded.
    func testAbsurdValuesInsideSelfConsistentBundles() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let bundle = scratch + "/b", sharded = scratch + "/s"
        XCTAssertEqual(try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle, "--tokenizer", TestSupport.fixture("tokenizer/valid")).status, 0)
        XCTAssertEqual(try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), sharded, "--max-shard-size", "30kB").status, 0)
        let rows: [(bundle: String, file: String, from: String, to: String, fragment: String)] = [
            (bundle, "config.json", "\"hidden_size\": 32", "\"hidden_size\": 4611686018427387904", "hidden_size"),
            (bundle, "config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000000000000", "num_hidden_layers"),
            (bundle, "config.json", "\"num_attention_heads\": 4", "\"num_attention_heads\": 4611686018427387904", "num_attention_heads"),
            (bundle, "config.json", "\"vocab_size\": 128", "\"vocab_size\": 0", "vocab_size"),
            (bundle, "config.json", "\"num_attention_heads\": 4", "\"num_attention_heads\": 3", "not divisible"),
            (bundle, "config.json", "\"max_position_embeddings\": 16", "\"max_position_embeddings\": null", "max_position_embeddings is null"),
            (bundle, "config.json", "\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": 1e400", "layer_norm_eps"),
            (bundle, "config.json", "\"vocab_size\": 128", "\"vocab_size\": 128, \"vocab_size\": 129", "vocab_size"),
            (bundle, "tokenizer.json", "\"<pad>\": 5", "\"<pad>\": 9223372036854775807", "no token id in 0...2147483647"),
            (bundle, "generation_config.json", "\"temperature\": 0.8", "\"temperature\": -1", "temperature -1 is not a positive number"),
            (bundle, "manifest.json", "\"path\": \"config.json\"", "\"path\": \"../config.json\"", "../config.json is not a relative path"),
            (sharded, "model.safetensors.index.json", "\"total_size\": ", "\"total_size\": 1180591620717411303424, \"was\": ", "total_size"),
        ]
        for row in rows {
            let path = row.bundle + "/" + row.file
            let original = try String(contentsOfFile: path, encoding: .utf8)
            let manifest = try String(contentsOfFile: row.bundle + "/manifest.json", encoding: .utf8)
            XCTAssertTrue(original.contains(row.from), row.from)
            try writeText(original.replacingOccurrences(of: row.from, with: row.to), to: path)
            if row.file != "manifest.json" { try TestSupport.rehashManifest(row.bundle, file: row.file) }
            let args = ["convert", row.bundle, scratch + "/out"]
            let r = try TestSupport.run(TestSupport.arapackBinary, args)
            XCTAssertEqual(r.status, 2, "\(row.to): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            // (the manifest's own problems are named by verify's check, "manifest: …")
            XCTAssertTrue(r.stderr.contains(row.fragment) && r.stderr.contains(row.file == "manifest.json" ? "(manifest: " : row.file), "\(row.to): \(r.stderr)")
            XCTAssertFalse(pathExists(scratch + "/out"))
            let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
            XCTAssertEqual(peak.status, 2)
            XCTAssertLessThan(peak.peakKiB, Self.peakBoundMiB << 10, row.to)
            try writeText(original, to: path)
            try writeText(manifest, to: row.bundle + "/manifest.json")
        }
    }

    /// Self-consistent int4 bundles (the manifest re-hashed) whose tensors do not make a weight: a `_shape` stating
    /// another shape than the words and the scale, and a weight whose `_shape` is missing (its words and scale are then
    /// no tensor of the model). `verify` names the problem (exit 1); `convert` and `verify --parity` exit 2 naming the
    /// tensor; nothing is written.
    func testInt4WeightsWhosePartsDisagree() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let bundle = scratch + "/b", weights = bundle + "/model.safetensors", name = "model.transformer.layers.1.linear2.weight"
        XCTAssertEqual(try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_odd.pt"), bundle, "--dtype", "int4", "--int4-group-size", "8").status, 0)
        let original = try Data(contentsOf: URL(fileURLWithPath: weights))
        let file = try SafetensorsFile(path: weights)
        let shape = try file.entry(named: name + "_shape")
        XCTAssertEqual(try file.tensor(named: name + "_shape").integers(as: Int64.self), [96, 200])
        var stated = original
        stated[file.header.dataStart + shape.dataRange.lowerBound + 8] = 192  // [96, 200] → [96, 192]
        var renamed = original
        let header = original.prefix(file.header.dataStart)
        let at = try XCTUnwrap(header.range(of: Data((name + "_shape").utf8)))
        renamed[at.upperBound - 1] = UInt8(ascii: "f")  // …weight_shapf: the same header length
        let statedProblem = "\(name)_shape states [96, 192], but its words and scale make [96, 200]"
        let statedRead = "\(weights): \(name)_packed: an int4 weight's _shape tensor must be I64 [2] = [96, 200] (its words and scale); found I64 [2] = [96, 192]"
        for (bytes, problem, readError) in [(stated, statedProblem, statedRead), (renamed, "missing 1 tensor(s) the config implies: ", "missing 1 tensor(s) the config implies: ")] {
            try bytes.write(to: URL(fileURLWithPath: weights))
            try TestSupport.rehashManifest(bundle, file: "model.safetensors")
            let verify = try TestSupport.run(TestSupport.arapackBinary, ["verify", bundle])
            XCTAssertEqual(verify.status, 1, verify.stdout + verify.stderr)
            XCTAssertTrue(verify.stdout.contains(problem), verify.stdout)
            for (args, fragment) in [(["convert", bundle, scratch + "/out"], problem),
                                     (["verify", bundle, "--parity", "--against", TestSupport.fixture("golden/ar_odd.pt")], readError)] {
                let r = try TestSupport.run(TestSupport.arapackBinary, args)
                XCTAssertEqual(r.status, 2, "\(args[0]) \(fragment): \(r.stdout) \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(fragment) && r.stderr.contains("transformer.layers.1.linear2.weight"), "\(args[0]): \(r.stderr)")
                XCTAssertFalse(pathExists(scratch + "/out"))
            }
        }
        // The pass-through of an int4 source (same scheme, same groups) checks the parts before it copies them.
        try stated.write(to: URL(fileURLWithPath: weights))
        try TestSupport.rehashManifest(bundle, file: "model.safetensors")
        let model = try ReleaseModel(path: bundle)
        XCTAssertThrowsError(try model.quantizedTensors("transformer.layers.1.linear2.weight")) { XCTAssertEqual("\($0)", statedRead) }
    }

    /// Round three (issue 27): small torch.save files whose DEFLATE'd data.pkl inflates to gigabytes, made by
    /// Fixtures/hostile/pickle_bomb.py (a 1 GiB string or 1 GiB of opcodes in about 1 MB, 10 GiB in about 10 MB), and
    /// pickles just under the 4 MiB cap built to allocate the most per byte: `inspect`, `convert` and `inspect
    /// --check-data` refuse the bombs unread and read the rest, each within 300 MiB and 5 s of CPU (the debug build's).
    func testSmallFilesThatInflateToGigabytesCostLittle() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let source = TestSupport.fixture("torch/valid/training_dict.pt")
        let generator = TestSupport.fixture("hostile/pickle_bomb.py")
        var files: [(name: String, refused: Bool)] = []
        for (kind, size) in [("string", 1 << 30), ("opcodes", 1 << 30), ("string", 10 << 30), ("opcodes", 10 << 30)] {
            let name = "\(kind)-\(size >> 30)GiB.pt"
            let made = try TestSupport.run("/usr/bin/env", ["python3"] + [generator, source, scratch + "/" + name, kind, String(size)])
            XCTAssertEqual(made.status, 0, made.stderr)
            XCTAssertLessThan(try fileSize(scratch + "/" + name), size >> 9, "\(name): a small file")
            files.append((name, true))
        }
        // Just under the cap: 4 MiB of opcodes that each build a value (empty tuples, lists, memoized dicts) in one list.
        let data = try XCTUnwrap(ZipReaderForTests.dataPickle(of: source))
        for (label, unit) in [("tuples", [UInt8](")".utf8)), ("lists", [UInt8]("]".utf8)), ("dicts", [0x7D, 0x94] as [UInt8])] {
            var pickle = Array(data.dropLast(2)) + [0x58, 1, 0, 0, 0, 0x78, 0x28]
            while pickle.count + unit.count + 3 <= 4 << 20 { pickle += unit }
            pickle += [0x6C, 0x75, 0x2E]
            let name = "max-\(label).pt"
            let made = try TestSupport.run("/usr/bin/env", ["python3"] + ["-c", """
                import sys, zipfile
                src, out, pkl = sys.argv[1:4]
                with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as o:
                    for i in z.infolist():
                        o.writestr(i.filename, open(pkl, "rb").read() if i.filename.endswith("/data.pkl") else z.read(i.filename))
                """, source, scratch + "/" + name, try { let p = scratch + "/\(label).pkl"; try Data(pickle).write(to: URL(fileURLWithPath: p)); return p }()])
            XCTAssertEqual(made.status, 0, made.stderr)
            files.append((name, false))
        }
        for file in files {
            let path = scratch + "/" + file.name
            for args in [["inspect", path], ["inspect", "--check-data", path], ["convert", path, scratch + "/out"]] {
                let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
                XCTAssertLessThan(peak.peakKiB, 300 << 10, "\(args.joined(separator: " ")): peak \(peak.peakKiB >> 10) MiB")
                // CPU time, not wall time (a busy machine stretches the one, not the other); of the debug build.
                XCTAssertLessThan(peak.cpuSeconds, 5, "\(args.joined(separator: " ")): \(peak.cpuSeconds) s of CPU")
                if file.refused {
                    XCTAssertEqual(peak.status, 2, args.joined(separator: " "))
                    let r = try TestSupport.run(TestSupport.arapackBinary, args)
                    XCTAssertTrue(r.stderr.contains("arapack reads checkpoint pickles of at most 4194304") && r.stderr.contains("refused unread"), r.stderr)
                }
                removeTree(scratch + "/out")
            }
        }
    }
}

extension HostileTableTests {
    /// Round three, the sweep (issue 27, item 3): inputs built by Fixtures/hostile/cost_sweep.py to cost the most per
    /// byte in each reader that is not a pickle: JSON of tiny values, tokenizers with huge merges lists, DCP metadata
    /// of millions of empty dicts, bundles and archives of thousands of tiny files, zstd frames that claim or unpack
    /// to tens of GiB. Each is read within its budget (ROBUSTNESS.md): 300 MiB peak and 5 s of CPU in the debug
    /// build, accepted or refused with one line naming the file and the limit.
    func testEverySmallInputThatCostsMostPerByteStaysInItsBudget() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        let generator = TestSupport.fixture("hostile/cost_sweep.py")
        let checkpoint = TestSupport.fixture("torch/valid/training_dict.pt")
        let bundle = scratch + "/bundle"
        XCTAssertEqual(try TestSupport.arapack("convert", TestSupport.fixture("golden/ar_gelu.pt"), bundle, "--tokenizer", TestSupport.fixture("tokenizer/valid")).status, 0)
        func copyOfBundle(_ name: String) throws -> String {
            XCTAssertEqual(try TestSupport.run("/bin/cp", ["-r", bundle, scratch + "/" + name]).status, 0)
            return scratch + "/" + name
        }
        // (kind, size, what the generator reads, the arapack command made from the generated path, nil if accepted
        // or the fragment of the one-line error)
        let rows: [(kind: String, size: Int, source: String?, command: (String) -> [String], refusal: String?)] = [
            ("json-numbers", 2_000_000, nil, { ["convert", checkpoint, scratch + "/out", "--config", $0] }, nil),
            ("json-numbers", 10_000_000, nil, { ["convert", checkpoint, scratch + "/out", "--config", $0] }, "more than 4194304 values"),
            ("json-numbers", 67_000_000, nil, { ["convert", checkpoint, scratch + "/out", "--config", $0] }, "more than 4194304 values"),
            ("json-numbers", 68_000_000, nil, { ["convert", checkpoint, scratch + "/out", "--config", $0] }, "larger than 67108864 bytes"),
            ("json-objects", 10_000_000, nil, { ["convert", checkpoint, scratch + "/out", "--config", $0] }, nil),
            ("tokenizer-merges", 10_000_000, TestSupport.fixture("tokenizer/valid"), { ["convert", checkpoint, scratch + "/out", "--tokenizer", $0] }, nil),
            ("tokenizer-arrays", 10_000_000, TestSupport.fixture("tokenizer/valid"), { ["convert", checkpoint, scratch + "/out", "--tokenizer", $0] }, "is not a pair of tokens"),
            ("dcp-dicts", 2_000_000, TestSupport.fixture("dcp/valid/full_shard"), { ["convert", $0, scratch + "/out"] }, "lists, dicts and objects limit of 250000"),
            ("dcp-dicts", 10_000_000, TestSupport.fixture("dcp/valid/full_shard"), { ["inspect", $0] }, "lists, dicts and objects limit of 1250000"),
            ("bundle-files", 20_000, try copyOfBundle("unlisted"), { _ in ["convert", scratch + "/unlisted", scratch + "/out"] }, "more than 10000 files"),
            ("bundle-files", 9_985, try copyOfBundle("listed"), { _ in ["convert", scratch + "/listed", scratch + "/out"] }, nil),
            ("archive-entries", 20_000, nil, { ["convert", $0, scratch + "/out"] }, "more than 10000 entries"),
            ("zstd-claims", 1_000_000, nil, { ["convert", $0, scratch + "/out"] }, "a decompression bomb?"),
            ("zstd-claims", 10_000_000, nil, { ["verify", $0] }, "a decompression bomb?"),
            ("zstd-skippable", 1_000, nil, { ["convert", $0, scratch + "/out"] }, "header length 18446744069822294608"),
        ]
        var measured: [String] = []
        for (i, row) in rows.enumerated() {
            let made = "\(scratch)/zs\(i)" + (row.kind.hasPrefix("zstd") || row.kind.hasPrefix("archive") ? ".tar.zst" : row.kind.hasPrefix("json") ? ".json" : "")
            let out = row.kind == "bundle-files" ? (row.refusal == nil ? "listed" : "unlisted") : made
            let generated = try TestSupport.run("/usr/bin/env", ["python3", generator, row.kind, out, String(row.size)] + (row.source.map { [$0] } ?? []))
            XCTAssertEqual(generated.status, 0, generated.stderr)
            let args = row.command(made)
            let label = "\(row.kind) \(row.size): \(args.first!)"
            // First under a timeout (a broken limit would spend minutes), then measured.
            let r = try TestSupport.run("/usr/bin/timeout", ["60", TestSupport.arapackBinary] + args)
            XCTAssertNotEqual(r.status, 124, "\(label): still running after 60 s")
            guard r.status != 124 else { continue }
            removeTree(scratch + "/out")
            let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
            measured.append("\(label) \(peak.peakKiB >> 10) MiB \(peak.cpuSeconds) s")
            XCTAssertLessThan(peak.peakKiB, 300 << 10, "\(label): peak \(peak.peakKiB >> 10) MiB")
            XCTAssertLessThan(peak.cpuSeconds, 5, "\(label): \(peak.cpuSeconds) s of CPU")
            XCTAssertEqual(peak.status, r.status, label)
            if let fragment = row.refusal {
                XCTAssertEqual(r.status, 2, "\(label): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(label): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(fragment) && r.stderr.contains(args.first == "convert" && row.kind == "bundle-files" ? args[1] : made), "\(label): expected \"\(fragment)\" in: \(r.stderr)")
                XCTAssertFalse(pathExists(scratch + "/out"), label)
            } else {
                XCTAssertEqual(r.status, 0, "\(label): \(r.stderr)")
            }
            removeTree(scratch + "/out")
        }
        print("cost sweep:", measured.joined(separator: "; "))
    }
}

/// The inflated `data.pkl` of a torch.save file, by Python's zipfile (not arapack's reader).
enum ZipReaderForTests {
    static func dataPickle(of path: String) throws -> Data? {
        let out = try TestSupport.temporaryDirectory()
        defer { removeTree(out) }
        let r = try TestSupport.run("/usr/bin/env", ["python3"] + ["-c", """
            import sys, zipfile
            z = zipfile.ZipFile(sys.argv[1])
            open(sys.argv[2], "wb").write(z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0]))
            """, path, out + "/data.pkl"])
        guard r.status == 0 else { return nil }
        return try Data(contentsOf: URL(fileURLWithPath: out + "/data.pkl"))
    }
}
