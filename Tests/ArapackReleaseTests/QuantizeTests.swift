import ArapackFormats
@testable import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Casts bit-equal to PyTorch's `.to(bfloat16/float16)`; int8 weights and scales equal PyTorch's by the same
/// rule; int8 bundles read back, verify, and convert back to float32.
final class QuantizeTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    func bits16(_ t: Tensor) -> [UInt16] {
        t.withUnsafeBytes { raw in (0..<t.elementCount).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
    }

    func testCastsEqualTorchBitForBit() throws {
        let file = try SafetensorsFile(path: TestSupport.fixture("quantize/casts.safetensors"))
        let caster = TensorCaster()
        let source = try file.tensor(named: "source")
        let bf16 = bits16(try caster.cast(source, to: .bf16, name: "source"))
        let expected = bits16(try file.tensor(named: "bf16"))
        XCTAssertEqual(bf16.count, 36038)
        let mismatches = (0..<bf16.count).filter { bf16[$0] != expected[$0] }
        XCTAssertEqual(mismatches.count, 0, "first mismatches: \(mismatches.prefix(5).map { (try! source.floats()[$0].bitPattern, bf16[$0], expected[$0]) })")

        let small = try file.tensor(named: "f16_source")
        let f16 = bits16(try caster.cast(small, to: .f16, name: "f16_source"))
        let expected16 = bits16(try file.tensor(named: "f16"))
        let mismatches16 = (0..<f16.count).filter { f16[$0] != expected16[$0] }
        XCTAssertEqual(mismatches16.count, 0, "first mismatches: \(mismatches16.prefix(5).map { (try! small.floats()[$0].bitPattern, f16[$0], expected16[$0]) })")
        // Values torch would turn into inf are refused by name instead.
        XCTAssertThrowsError(try caster.cast(source, to: .f16, name: "source")) {
            guard case let .float16Overflow(_, tensor, count)? = $0 as? CastError else { return XCTFail("\($0)") }
            XCTAssertEqual(tensor, "source")
            XCTAssertEqual(count, try! source.floats().filter { abs($0) >= 65520 && $0.isFinite }.count)
        }
    }

    func bundle(_ dtype: DType, name: String) throws -> String {
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt")), tokenizer: nil, options: .init(dtype: dtype), into: dir, progress: .silent)
        return dir
    }

    func int8Bundle(groupSize: Int, keep: [String] = [], name: String) throws -> String {
        let model = try ReleaseModel(path: TestSupport.fixture("golden/ar_odd.pt"))
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: nil, options: .init(dtype: .i8, int8: .init(groupSize: groupSize), keep: keep), into: dir, progress: .silent)
        return dir
    }

    func testInt8WeightsAndScalesEqualTorch() throws {
        let reference = try SafetensorsFile(path: TestSupport.fixture("quantize/int8.safetensors"))
        for (groupSize, prefix) in [(0, ""), (8, "group8.")] {
            let dir = try int8Bundle(groupSize: groupSize, name: "g\(groupSize)")
            let bundle = try SafetensorsFile(path: dir + "/model.safetensors")
            let names = reference.tensorNames.filter { $0.hasPrefix(prefix) && (prefix != "" || !$0.hasPrefix("group8.")) }
            XCTAssertEqual(names.count, 18, "out_proj, linear1, linear2 of 3 layers, each with its scale")
            for name in names {
                let mine = try bundle.tensor(named: String(name.dropFirst(prefix.count)))
                let theirs = try reference.tensor(named: name)
                XCTAssertEqual(mine.dtype, theirs.dtype, name)
                XCTAssertEqual(mine.shape, theirs.shape, name)
                XCTAssertTrue(mine.isBitIdentical(to: theirs), name)
            }
            // What compressed-tensors cannot load quantized is bfloat16: the tied embedding and in_proj_weight (a bare
            // parameter), cast as torch casts; vectors and the position table stay float32; the config says how
            // the weights are stored.
            // (bit for bit the --dtype bf16 bundle's tensors, whose casts testCastsEqualTorchBitForBit holds to torch's)
            let bf16 = try SafetensorsFile(path: try self.bundle(.bf16, name: "bf16-\(groupSize)") + "/model.safetensors")
            for name in ["model.token_embedding.weight", "model.transformer.layers.0.self_attn.in_proj_weight"] {
                XCTAssertEqual(try bundle.descriptor(named: name).dtype, .bf16, name)
                XCTAssertTrue(try bundle.tensor(named: name).isBitIdentical(to: try bf16.tensor(named: name)), name)
            }
            for name in ["model.position_embedding.weight", "model.transformer.layers.0.norm1.weight"] {
                XCTAssertEqual(try bundle.descriptor(named: name).dtype, .f32, name)
            }
            XCTAssertFalse(bundle.tensorNames.contains { $0.hasSuffix("_scale") && !$0.contains("linear") && !$0.contains("out_proj") })
            XCTAssertEqual(bundle.tensorNames.filter { $0.hasSuffix("_scale") }.count, 9)
            XCTAssertEqual(try bundle.descriptor(named: "model.ln_f.weight").dtype, .f32)
            let config = try TestSupport.loadJSON(dir + "/config.json")
            XCTAssertEqual(config["torch_dtype"]?.stringValue, "float32")
            XCTAssertEqual(config["quantization_config"]?["config_groups"]?["group_0"]?["weights"]?["strategy"]?.stringValue, groupSize == 0 ? "channel" : "group")
            let manifest = try TestSupport.loadJSON(dir + "/manifest.json")
            XCTAssertEqual(manifest["dtype"]?.stringValue, "int8")
            let records = try XCTUnwrap(manifest["quantization"]?["tensors"]?.elements)
            XCTAssertEqual(records.count, 9 + 4, "the int8 weights and the bfloat16 casts")
            for r in records { XCTAssertGreaterThan(r["snr_db"]?.doubleValue ?? 0, 40, "\(r)") }
            XCTAssertTrue(try BundleVerifier.verify(path: dir, progress: .silent).passed)
            try TestSupport.validateAgainstSchema("manifest.schema.json", [dir + "/manifest.json"])
            try TestSupport.validateAgainstSchema("config.schema.json", [dir + "/config.json"])
        }
    }

    func testInt8ReadsBackDequantizedAndConvertsToFloat32() throws {
        let dir = try int8Bundle(groupSize: 0, name: "b")
        let model = try ReleaseModel(path: dir)
        XCTAssertEqual(model.dominantDType, .i8)
        XCTAssertEqual(model.quantizedScales.count, 9)
        let reference = try SafetensorsFile(path: TestSupport.fixture("quantize/int8.safetensors"))
        let q = try reference.tensor(named: "model.transformer.layers.2.linear1.weight").integers(as: Int8.self)
        let s = try reference.tensor(named: "model.transformer.layers.2.linear1.weight_scale").floats()
        let expected = q.enumerated().map { Float($0.element) * s[$0.offset / 96] }
        XCTAssertEqual(try model.tensor("transformer.layers.2.linear1.weight").floats(), expected)
        // Back to a float32 torch checkpoint: the dequantized values, the tie kept.
        let pt = scratch + "/back.pt"
        try TrainingExport.writeTorch(model, dtype: nil, to: pt, replacing: false)
        let back = try TorchCheckpoint(path: pt)
        XCTAssertEqual(try back.tensor(named: "transformer.layers.2.linear1.weight").floats(), expected)
        XCTAssertEqual(back.sharedGroups, [["token_embedding.weight", "lm_head.weight"]])
    }

    func testKeepPatternsAndGroupSizeErrors() throws {
        let dir = try int8Bundle(groupSize: 0, keep: ["*.linear2.weight", "model.token_embedding.weight"], name: "k")
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(try st.descriptor(named: "model.token_embedding.weight").dtype, .f32)
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.self_attn.in_proj_weight").dtype, .bf16)
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.linear2.weight").dtype, .f32)
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.linear1.weight").dtype, .i8)
        XCTAssertNil(st.tensorNames.first { $0 == "model.transformer.layers.1.linear2.weight_scale" })
        let ignore = try TestSupport.loadJSON(dir + "/config.json")["quantization_config"]?["ignore"]?.elements?.compactMap(\.stringValue)
        XCTAssertEqual(ignore, ["model.lm_head", "model.transformer.layers.0.linear2", "model.transformer.layers.1.linear2",
                                "model.transformer.layers.2.linear2"], "the tied head, then the kept Linear modules")
        XCTAssertTrue(try BundleVerifier.verify(path: dir, progress: .silent).passed)
        XCTAssertThrowsError(try int8Bundle(groupSize: 7, name: "bad")) {
            guard case let .int8GroupSize(_, groupSize, columns)? = $0 as? CastError else { return XCTFail("\($0)") }
            XCTAssertEqual(groupSize, 7)
            XCTAssertNotEqual(columns % 7, 0)
        }
    }

    /// verify names what would keep transformers + compressed-tensors from loading an int8 bundle as declared.
    func testVerifyNamesInt8LayoutsCompressedTensorsCannotLoad() throws {
        let dir = try int8Bundle(groupSize: 0, name: "v")
        let original = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        for (from, to, fragment) in [
            ("\"format\": \"int-quantized\",\n        \"weights\"", "\"weights\"", "states no format \"int-quantized\""),
            ("\"targets\": [\n          \"Linear\"\n        ]", "\"targets\": [\"Linear\", \"Embedding\"]", "not [\"Linear\"]"),
            ("\"model.lm_head\"", "\"model.position_embedding\"", "does not ignore model.lm_head"),
            ("\"model.lm_head\"", "\"model.lm_head\", \"model.transformer.layers.0.linear1\"",
             "model.transformer.layers.0.linear1.weight is I8 but quantization_config ignores its module"),
        ] {
            XCTAssertTrue(original.contains(from), from)
            try writeText(original.replacingOccurrences(of: from, with: to), to: dir + "/config.json")
            try TestSupport.rehashManifest(dir, file: "config.json")
            let report = try BundleVerifier.verify(path: dir, progress: .silent)
            XCTAssertTrue(report.problems.contains { $0.hasPrefix("tensors: ") && $0.contains(fragment) }, fragment + ": \(report.problems)")
        }
    }
}
