import ArapackFormats
import ArapackRelease
import ArapackTestSupport
import Foundation
import XCTest

/// What arapack writes, pinned: every model fixture converted (native f32 with its archive; bf16, f16, int8, int4 and
/// GPT-2 for two of them; torch and DCP back) must give the bytes `Fixtures/pins.json` records, file by file.
/// A refactor that changes no behaviour keeps them; a deliberate change of the output re-pins with
/// `ARAPACK_UPDATE_PINS=1 swift test --filter OutputPinTests` and says why in its commit.
final class OutputPinTests: XCTestCase {
    static let pins = TestSupport.fixture("pins.json")

    func conversions() -> [(label: String, source: String, options: [String])] {
        var out: [(String, String, [String])] = []
        let tokenizer = ["--tokenizer", TestSupport.fixture("tokenizer/valid")]
        for name in ["bare_state_dict", "bf16", "big_endian", "compile_orig_mod_prefix", "ddp_compile_stacked_prefix", "ddp_module_prefix",
                     "deflated", "fsdp1_full_state_dict", "fsdp1_wrapped_names", "fsdp_full_state_dict", "training_dict", "zip64_records"] {
            out.append(("torch/\(name)", "torch/valid/\(name).pt", ["--config", "HEADS"] + (name == "fsdp_full_state_dict" ? tokenizer : [])))
        }
        for name in ["ar_gelu", "ar_long", "ar_odd", "ar_relu", "ar_small_scale", "mdlm_gelu"] {
            out.append(("golden/\(name)", "golden/\(name).pt", []))
        }
        out.append(("release/mdlm_relu", "release/valid/mdlm_relu.pt", []))
        out.append(("release/untied", "release/valid/untied.pt", ["--allow-untied"]))
        out.append(("trained", "trained/arafusion_tiny_ar.pt", ["--tokenizer", TestSupport.fixture("trained/tokenizer")]))
        for dtype in ["bf16", "f16", "int8"] {
            out.append(("trained \(dtype)", "trained/arafusion_tiny_ar.pt", ["--dtype", dtype, "--tokenizer", TestSupport.fixture("trained/tokenizer")]))
            out.append(("golden/ar_odd \(dtype)", "golden/ar_odd.pt", ["--dtype", dtype, "--max-shard-size", "40kB"]))
        }
        out.append(("golden/ar_odd int8 groups", "golden/ar_odd.pt", ["--dtype", "int8", "--int8-group-size", "8"]))
        out.append(("trained int4", "trained/arafusion_tiny_ar.pt", ["--dtype", "int4", "--int4-group-size", "32", "--tokenizer", TestSupport.fixture("trained/tokenizer")]))
        out.append(("golden/ar_odd int4 groups", "golden/ar_odd.pt", ["--dtype", "int4", "--int4-group-size", "8", "--max-shard-size", "40kB"]))
        out.append(("golden/ar_gelu gpt2", "golden/ar_gelu.pt", ["--to", "gpt2", "--max-shard-size", "30kB"]))
        out.append(("trained gpt2 bf16", "trained/arafusion_tiny_ar.pt", ["--to", "gpt2", "--dtype", "bf16", "--tokenizer", TestSupport.fixture("trained/tokenizer")]))
        out.append(("golden/ar_odd torch", "golden/ar_odd.pt", ["--to", "torch"]))
        out.append(("golden/ar_odd dcp bf16", "golden/ar_odd.pt", ["--to", "dcp", "--dtype", "bf16"]))
        for dtype in ["f32", "q8_0"] {
            out.append(("trained gguf \(dtype)", "trained/arafusion_tiny_ar.pt", ["--to", "gguf", "--dtype", dtype, "--tokenizer", TestSupport.fixture("gguf/metaspace")]))
        }
        out.append(("golden/ar_gelu gguf bf16", "golden/ar_gelu.pt", ["--to", "gguf", "--dtype", "bf16", "--tokenizer", TestSupport.fixture("tokenizer/valid"), "--allow-tokenizer-mismatch"]))
        return out
    }

    func testEveryFixtureConvertsToThePinnedBytes() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        var actual: [JSONValue.Member] = []
        // State dicts without a config need the head count (the shapes give every other size).
        try writeText("{\"n_heads\": 4}", to: scratch + "/heads.json")
        for (i, var c) in conversions().enumerated() {
            c.options = c.options.map { $0 == "HEADS" ? scratch + "/heads.json" : $0 }
            let dst = scratch + "/release-\(i)"  // same names every run: the card names the folder
            let isBundle = !c.options.contains("--to") || c.options.contains("gpt2")
            let r = try TestSupport.run(TestSupport.arapackBinary, ["convert", TestSupport.fixture(c.source), dst] + c.options
                                        + (isBundle ? ["--archive"] : []), environment: ["SOURCE_DATE_EPOCH": ""])
            XCTAssertEqual(r.status, 0, "\(c.label): \(r.stderr)")
            var files: [JSONValue.Member] = []
            let names = (try? FileKind(atPath: dst)) == .directory ? try BundleFolder.files(dst).map { ($0, dst + "/" + $0) } : [("", dst)]
            for (name, path) in names + (isBundle ? [("archive", dst + ".tar.zst")] : []) {
                files.append(.init(name.isEmpty ? "file" : name, .string(try SHA256.hex(ofFile: path))))
            }
            actual.append(.init(c.label + " " + c.options.filter { !$0.hasPrefix("/") }.joined(separator: " "), .object(files)))
            removeTree(dst)
            for extra in [dst + ".tar.zst", dst + ".tar.zst.sha256"] { try? FileManager.default.removeItem(atPath: extra) }
        }
        let document = JSONValue.object(actual)
        if ProcessInfo.processInfo.environment["ARAPACK_UPDATE_PINS"] == "1" {
            try writeText(document.serialized(pretty: true) + "\n", to: Self.pins)
            return
        }
        let pinned = try TestSupport.loadJSON(Self.pins)
        XCTAssertEqual(pinned.members?.map(\.key), actual.map(\.key), "the pinned conversions")
        for m in actual {
            guard let expected = pinned[m.key] else { continue }
            for f in m.value.members ?? [] {
                XCTAssertEqual(f.value, expected[f.key], "\(m.key): \(f.key) changed")
            }
            XCTAssertEqual(expected.members?.map(\.key), m.value.members?.map(\.key), "\(m.key): the files")
        }
    }
}
