import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Runs the built binary and checks its output and exit status, as a user's script would.
final class InspectCommandTests: XCTestCase {
    func testInspectValidFixture() throws {
        let r = try TestSupport.arapack("inspect", TestSupport.fixture("safetensors/valid/all_dtypes.safetensors"))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("format      safetensors"))
        XCTAssertTrue(r.stdout.contains("tensors     19   parameters 89"), r.stdout)
        XCTAssertTrue(r.stdout.contains("model.layers.0.weight  F32      [4, 6]     96"), r.stdout)
        XCTAssertTrue(r.stdout.contains("metadata    format=pt"))
        XCTAssertEqual(r.stderr, "")
    }

    func testInspectJSONMatchesFixturesAndSchema() throws {
        let expected = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("safetensors/valid.json"))["files"]?.members)
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var documents: [String] = []
        for file in expected {
            let r = try TestSupport.arapack("inspect", TestSupport.fixture("safetensors/valid/" + file.key), "--json", "--check-data")
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try JSONParser.parse(Array(r.stdout.utf8))
            let tensors = try XCTUnwrap(file.value["tensors"]?.members)
            XCTAssertEqual(json["tensor_count"]?.intValue, tensors.count, file.key)
            let params = tensors.reduce(0) { $0 + ($1.value["shape"]!.elements!.reduce(1) { $0 * $1.intValue! }) }
            XCTAssertEqual(json["parameter_count"]?.intValue, params, file.key)
            for f in json["files"]?.elements ?? [] {
                XCTAssertEqual(f["sha256"]?.stringValue, try SHA256.hex(ofFile: f["path"]!.stringValue!))
            }
            let path = dir + "/\(documents.count).json"
            try Data(r.stdout.utf8).write(to: URL(fileURLWithPath: path))
            documents.append(path)
        }
        try TestSupport.validateAgainstSchema("inspect.schema.json", documents)
    }

    func testInspectCheckpointsJSONAndSchema() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var documents: [String] = []
        for name in ["training_dict.pt", "bare_state_dict.pt", "fsdp_full_state_dict.pt", "views.pt", "bf16.pt"] {
            let r = try TestSupport.arapack("inspect", TestSupport.fixture("torch/valid/" + name), "--json")
            XCTAssertEqual(r.status, 0, r.stderr)
            let path = dir + "/\(name).json"
            try Data(r.stdout.utf8).write(to: URL(fileURLWithPath: path))
            documents.append(path)
        }
        let training = try TestSupport.loadJSON(documents[0])
        XCTAssertEqual(training["format"]?.stringValue, "torch")
        XCTAssertEqual(training["checkpoint"]?["state_dict_key"]?.stringValue, "model")
        XCTAssertEqual(training["checkpoint"]?["step"]?.intValue, 2)
        XCTAssertEqual(training["checkpoint"]?["other_tensors"]?.intValue, 84, "AdamW: exp_avg, exp_avg_sq and step for 28 parameters")
        XCTAssertEqual(training["checkpoint"]?["config"]?["n_layers"]?.intValue, 2)
        XCTAssertEqual(training["checkpoint"]?["tied_groups"], .array([.array([.string("token_embedding.weight"), .string("lm_head.weight")])]))
        XCTAssertEqual(training["parameter_count"]?.intValue, 25_856 - 128 * 32, "the tied matrix counts once")
        XCTAssertEqual(training["tensors"]?.elements?.first { $0["name"]?.stringValue == "lm_head.weight" }?["shares_storage_with"]?.stringValue,
                       "token_embedding.weight")
        XCTAssertEqual(training["globals"]?.elements?.allSatisfy { $0["safety"]?.stringValue == "safe" }, true)
        let refused = try TestSupport.arapack("inspect", TestSupport.fixture("torch/hostile/reduce_os_system.pt"), "--json")
        XCTAssertEqual(refused.status, 2)
        let path = dir + "/refused.json"
        try Data(refused.stdout.utf8).write(to: URL(fileURLWithPath: path))
        documents.append(path)
        try TestSupport.validateAgainstSchema("inspect.schema.json", documents)
    }

    /// A malicious checkpoint: the report lists the dangerous global, then one error line and exit 2.
    /// A quantized layer's parameters are its logical weight's, however they are stored: compressed-tensors' own
    /// int4 file (8 values to an int32 word, beside scales and a shape) and arapack's int8 and int4 bundles of the
    /// trained twin count what the float checkpoint counts; the stored elements are reported beside them.
    func testQuantizedLayersCountTheirLogicalParameters() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func inspect(_ path: String) throws -> JSONValue {
            let r = try TestSupport.arapack("inspect", path, "--json")
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try JSONParser.parse(Array(r.stdout.utf8))
            let out = dir + "/\(splitPath(path).1).json"
            try Data(r.stdout.utf8).write(to: URL(fileURLWithPath: out))
            try TestSupport.validateAgainstSchema("inspect.schema.json", [out])
            return json
        }
        // compressed-tensors' file: the linear weights of golden/ar_odd.pt, quantized twice (group8. and channel.).
        let golden = try inspect(TestSupport.fixture("golden/ar_odd.pt"))
        let linear = (golden["tensors"]?.elements ?? []).filter {
            let name = $0["name"]!.stringValue!
            return name.hasSuffix("out_proj.weight") || name.hasSuffix("linear1.weight") || name.hasSuffix("linear2.weight")
        }
        let linearParameters = linear.reduce(0) { $0 + $1["shape"]!.elements!.reduce(1) { $0 * $1.intValue! } }
        XCTAssertGreaterThan(linear.count, 0)
        let int4 = try inspect(TestSupport.fixture("quantize/int4.safetensors"))
        XCTAssertEqual(int4["parameter_count"]?.intValue, 2 * linearParameters)
        let stored = (int4["tensors"]?.elements ?? []).reduce(0) { $0 + $1["shape"]!.elements!.reduce(1) { $0 * $1.intValue! } }
        XCTAssertEqual(int4["element_count"]?.intValue, stored)
        XCTAssertLessThan(stored, linearParameters, "8 values to a word")
        let i32 = try XCTUnwrap(int4["dtypes"]?.elements?.first { $0["dtype"]?.stringValue == "I32" })
        XCTAssertEqual(i32["parameters"]?.intValue, 2 * linearParameters)
        XCTAssertEqual(i32["elements"]?.intValue, 2 * linearParameters / 8)
        XCTAssertEqual(int4["dtypes"]?.elements?.first { $0["dtype"]?.stringValue == "I64" }?["parameters"]?.intValue, 0, "shapes")

        // arapack's bundles of the trained twin: the checkpoint's count, tied matrix once.
        let checkpoint = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
        let expected = try XCTUnwrap(inspect(checkpoint)["parameter_count"]?.intValue)
        for (dtype, extra) in [("int8", [String]()), ("int4", ["--int4-group-size", "32"])] {
            let bundle = dir + "/" + dtype
            let c = try TestSupport.run(TestSupport.arapackBinary, ["convert", checkpoint, bundle, "--dtype", dtype, "--quiet"] + extra)
            XCTAssertEqual(c.status, 0, c.stderr)
            let json = try inspect(bundle)
            XCTAssertEqual(json["parameter_count"]?.intValue, expected, dtype)
            XCTAssertNotEqual(json["element_count"]?.intValue, expected, dtype)
            let text = try TestSupport.arapack("inspect", bundle)
            XCTAssertTrue(text.stdout.contains("parameters \(grouped(expected))   elements "), text.stdout)
        }
    }

    func testMaliciousCheckpointIsListedThenRefused() throws {
        let r = try TestSupport.arapack("inspect", TestSupport.fixture("torch/hostile/stack_global_obfuscated.pt"))
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stdout.contains("DANGEROUS  os.system"), r.stdout)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
        XCTAssertTrue(r.stderr.contains("global os.system"))
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("torch/hostile.json")).members)
        for row in table {
            let result = try TestSupport.arapack("inspect", TestSupport.fixture("torch/hostile/" + row.key))
            XCTAssertEqual(result.status, 2, row.key)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "\(row.key): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains(row.value.stringValue!), "\(row.key): \(result.stderr)")
        }
    }

    func testCheckDataCountsNonFiniteValues() throws {
        let r = try TestSupport.arapack("inspect", TestSupport.fixture("safetensors/valid/all_dtypes.safetensors"), "--json", "--check-data")
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try XCTUnwrap(JSONParser.parse(Array(r.stdout.utf8))["tensors"]?.elements)
        let counts = Dictionary(uniqueKeysWithValues: rows.map { ($0["name"]!.stringValue!, $0["non_finite"]!.intValue!) })
        XCTAssertEqual(counts["f32"], 3)
        XCTAssertEqual(counts["f64"], 2)
        XCTAssertEqual(counts["f16"], 2)
        XCTAssertEqual(counts["bf16"], 2)
        XCTAssertEqual(counts["f8_e4m3"], 1)
        XCTAssertEqual(counts["f8_e5m2"], 1)
        XCTAssertEqual(counts["i64"], 0)
        let text = try TestSupport.arapack("inspect", TestSupport.fixture("safetensors/valid/all_dtypes.safetensors"), "--check-data")
        XCTAssertTrue(text.stdout.contains("NaN/Inf found in 6 tensor(s)"), text.stdout)
    }

    /// Every hostile fixture: exit 2, one line on stderr naming the problem, nothing on stdout,
    /// and memory that stays small whatever size the file declares.
    func testHostileFixturesExitTwoWithOneLine() throws {
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("safetensors/hostile.json")).members)
        for row in table {
            let path = TestSupport.fixture("safetensors/hostile/" + row.key)
            let r = try TestSupport.arapack("inspect", path)
            XCTAssertEqual(r.status, 2, row.key)
            XCTAssertEqual(r.stdout, "", row.key)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(row.key): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(row.value.stringValue!), "\(row.key): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(path), "\(row.key) must name the file: \(r.stderr)")
            let measured = try TestSupport.peakMemory(TestSupport.arapackBinary, ["inspect", path])
            XCTAssertEqual(measured.status, 2)
            XCTAssertLessThan(measured.peakKiB, 200 * 1024, "\(row.key): peak resident KiB")
        }
    }

    /// The measure the test above relies on: a program's own peak, not the test process's. Linux carries a
    /// parent's high-water mark into a child spawned straight from it, which once failed CI on every fixture.
    func testPeakMemoryIsTheProgramsOwn() throws {
        let ballast = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 20, alignment: 4096)
        defer { ballast.deallocate() }
        ballast.initializeMemory(as: UInt8.self, repeating: 1)  // the test process now peaks above 256 MiB
        let small = try TestSupport.peakMemory("/bin/true", [])
        XCTAssertEqual(small.status, 0)
        XCTAssertLessThan(small.peakKiB, 16 * 1024, "/bin/true: peak resident KiB")
        // awk doubling a string to 64 MiB: the measure sees a program's own large peak, and its exit status.
        let large = try TestSupport.peakMemory("/usr/bin/awk", ["BEGIN { s = \"x\"; for (i = 0; i < 26; i++) s = s s; exit length(s) == 67108864 ? 3 : 1 }"])
        XCTAssertEqual(large.status, 3)
        XCTAssertGreaterThan(large.peakKiB, 64 * 1024, "awk: peak resident KiB")
        XCTAssertLessThan(large.peakKiB, 256 * 1024, "awk: peak resident KiB")
    }

    func testUsageErrorsExit64AndHelpExplains() throws {
        XCTAssertEqual(try TestSupport.arapack("inspect").status, 64)
        XCTAssertEqual(try TestSupport.arapack("inspect", "x", "--no-such-flag").status, 64)
        XCTAssertEqual(try TestSupport.arapack("frobnicate").status, 64)
        let help = try TestSupport.arapack("--help")
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdout.contains("64 usage error"))
        XCTAssertTrue(try TestSupport.arapack("inspect", "--help").stdout.contains("--check-data"))
        let missing = try TestSupport.arapack("inspect", "/nonexistent/model.safetensors")
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/model.safetensors: no such file or directory"))
    }
}
