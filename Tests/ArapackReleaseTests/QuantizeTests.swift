import ArapackFormats
@testable import ArapackRelease
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Casts bit-equal to PyTorch's `.to(bfloat16/float16)`; int8 weights and scales equal PyTorch's by the same
/// rule; int4 words, scales and shapes equal compressed-tensors' own compressor's; quantized bundles read back,
/// verify, and convert back to float32.
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
        // Four copies in one tensor (large enough to be converted by several cores): the same bits, every overflow
        // counted.
        let values = try source.floats(), four = values + values + values + values
        let big = try Tensor(dtype: .f32, shape: [four.count], bytes: four.withUnsafeBytes { Array($0) })
        XCTAssertEqual(bits16(try caster.cast(big, to: .bf16, name: "big")), expected + expected + expected + expected)
        XCTAssertThrowsError(try caster.cast(big, to: .f16, name: "big")) {
            guard case let .float16Overflow(_, _, count)? = $0 as? CastError else { return XCTFail("\($0)") }
            XCTAssertEqual(count, 4 * values.filter { abs($0) >= 65520 && $0.isFinite }.count)
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
        try BundleWriter.write(model, tokenizer: nil, options: .init(quantization: .init(.int8, groupSize: groupSize), keep: keep), into: dir, progress: .silent)
        return dir
    }

    /// Each `names` tensor of `reference`, its `prefix` dropped, is in `bundle` with the same dtype, shape and bits.
    func assertHolds(_ bundle: SafetensorsFile, _ reference: SafetensorsFile, _ names: [String], prefix: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        for name in names {
            let mine = try bundle.tensor(named: String(name.dropFirst(prefix.count)))
            let theirs = try reference.tensor(named: name)
            XCTAssertEqual(mine.dtype, theirs.dtype, name, file: file, line: line)
            XCTAssertEqual(mine.shape, theirs.shape, name, file: file, line: line)
            XCTAssertTrue(mine.isBitIdentical(to: theirs), name, file: file, line: line)
        }
    }

    func int4Bundle(groupSize: Int, keep: [String] = [], name: String, source: String = "golden/ar_odd.pt") throws -> String {
        let model = try ReleaseModel(path: TestSupport.fixture(source))
        let dir = scratch + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: nil, options: .init(quantization: .init(.int4, groupSize: groupSize), keep: keep), into: dir, progress: .silent)
        return dir
    }

    /// The int4 tensors are compressed-tensors' own (Fixtures/quantize/int4_generate.py: its `calculate_qparams` and
    /// `PackedQuantizationCompressor`), bit for bit, per group of 8 and per channel; the rest of the bundle is the
    /// int8 bundle's (bfloat16 embedding and in_proj, float32 vectors), and the config states pack-quantized.
    func testInt4WordsScalesAndShapesEqualCompressedTensors() throws {
        let reference = try SafetensorsFile(path: TestSupport.fixture("quantize/int4.safetensors"))
        for (groupSize, prefix) in [(8, "group8."), (0, "channel.")] {
            let dir = try int4Bundle(groupSize: groupSize, name: "int4-\(groupSize)")
            let bundle = try SafetensorsFile(path: dir + "/model.safetensors")
            let names = reference.tensorNames.filter { $0.hasPrefix(prefix) }
            XCTAssertEqual(names.count, 27, "out_proj, linear1, linear2 of 3 layers, each packed with its scale and shape")
            try assertHolds(bundle, reference, names, prefix: prefix)
            XCTAssertEqual(bundle.tensorNames.filter { $0.hasSuffix("_packed") }.count, 9)
            XCTAssertFalse(bundle.tensorNames.contains("model.transformer.layers.0.linear1.weight"), "int4 stores X_packed, not X")
            XCTAssertEqual(try bundle.descriptor(named: "model.token_embedding.weight").dtype, .bf16)
            XCTAssertEqual(try bundle.descriptor(named: "model.transformer.layers.0.self_attn.in_proj_weight").dtype, .bf16)
            XCTAssertEqual(try bundle.descriptor(named: "model.ln_f.weight").dtype, .f32)
            let config = try TestSupport.loadJSON(dir + "/config.json")
            XCTAssertEqual(config["torch_dtype"]?.stringValue, "float32")
            let q = try XCTUnwrap(config["quantization_config"])
            XCTAssertEqual(q["format"]?.stringValue, "pack-quantized")
            XCTAssertEqual(q["config_groups"]?["group_0"]?["format"]?.stringValue, "pack-quantized")
            XCTAssertEqual(q["config_groups"]?["group_0"]?["weights"]?["num_bits"]?.intValue, 4)
            XCTAssertEqual(q["config_groups"]?["group_0"]?["weights"]?["strategy"]?.stringValue, groupSize == 0 ? "channel" : "group")
            XCTAssertEqual(q["config_groups"]?["group_0"]?["weights"]?["group_size"], groupSize == 0 ? .null : .int(groupSize))
            let manifest = try TestSupport.loadJSON(dir + "/manifest.json")
            XCTAssertEqual(manifest["dtype"]?.stringValue, "int4")
            XCTAssertEqual(manifest["quantization"]?["method"]?.stringValue?.hasPrefix("int4 symmetric, " + (groupSize == 0 ? "per channel" : "groups of 8")), true)
            let records = try XCTUnwrap(manifest["quantization"]?["tensors"]?.elements)
            XCTAssertEqual(records.count, 9 + 4, "the int4 weights and the bfloat16 casts")
            let report = try BundleVerifier.verify(path: dir, progress: .silent)
            XCTAssertTrue(report.passed, "\(report.problems)")
            try TestSupport.validateAgainstSchema("manifest.schema.json", [dir + "/manifest.json"])
            try TestSupport.validateAgainstSchema("config.schema.json", [dir + "/config.json"])
        }
    }

    /// Hand-worked: one row of 8 values, one group. scale = max|x| / 7.5 = 1.6 / 7.5; x / scale = [-7.5, -3.75, 0, 0.46875,
    /// 1.40625, 2.5, 4.6875, 7.5] rounds half to even (and clamps) to [-8, -4, 0, 0, 1, 2, 5, 7], stored + 8 as the nibbles
    /// 0, 4, 8, 8, 9, 10, 13, 15, first lowest: the word 0xFDA98840. An all-zero row gets float32's epsilon as its scale.
    func testInt4PacksHandWorkedValues() throws {
        let q = LinearQuantization(.int4, groupSize: 0)
        let x: [Float] = [-1.6, -0.8, 0, 0.1, 0.3, 0.5333333, 1.0, 1.6, 0, 0, 0, 0, 0, 0, 0, 0]
        let scales = x.withUnsafeBufferPointer { q.scales(of: $0, rows: 2, cols: 8) }
        XCTAssertEqual(scales, [Float(1.6) / 7.5, Float.ulpOfOne])
        var values = [Int8](repeating: 0, count: 16)
        var error = QuantizationRecord.Accumulator()
        x.withUnsafeBufferPointer { xs in
            values.withUnsafeMutableBufferPointer { q.quantize(xs, rows: 0..<2, cols: 8, scales: scales, into: $0, error: &error) }
        }
        XCTAssertEqual(Array(values[0..<8]), [-8, -4, 0, 0, 1, 2, 5, 7])
        XCTAssertEqual(Array(values[8...]), [0, 0, 0, 0, 0, 0, 0, 0])
        var words = [UInt32](repeating: 0, count: 2)
        values.withUnsafeMutableBufferPointer { v in words.withUnsafeMutableBufferPointer { LinearQuantization.packInt4(v, into: $0) } }
        XCTAssertEqual(words, [0xFDA9_8840, 0x8888_8888])
        let stored = try Tensor(dtype: .i32, shape: [2, 1], storage: TensorStorage(copying: words.withUnsafeBytes { Array($0) }))
        let back = try LinearQuantization.dequantize(stored, scale: try Tensor(float32: scales, shape: [2, 1]),
                                                     shape: try Tensor(dtype: .i64, shape: [2], storage: TensorStorage(copying: [Int64(2), 8].withUnsafeBytes { Array($0) })),
                                                     name: "w")
        XCTAssertEqual(try back.floats(), [-8, -4, 0, 0, 1, 2, 5, 7].map { Float($0) * scales[0] } + [Float](repeating: 0, count: 8))
        // A shape tensor that disagrees with the words and the scale is refused, naming both.
        XCTAssertThrowsError(try LinearQuantization.dequantize(stored, scale: try Tensor(float32: scales, shape: [2, 1]),
                                                               shape: try Tensor(dtype: .i64, shape: [2], storage: TensorStorage(copying: [Int64(2), 7].withUnsafeBytes { Array($0) })),
                                                               name: "w")) {
            XCTAssertEqual("\($0)", "w: an int4 weight's _shape tensor must be I64 [2] = [2, 8] (its words and scale); found I64 [2] = [2, 7]")
        }
    }

    /// An int4 bundle reads back as float32 (nibble - 8) × scale, from its own tensors decoded here; it converts back to a
    /// float32 checkpoint; converted again without --dtype it keeps its tensors byte for byte.
    func testInt4ReadsBackDequantizedAndKeepsItsBytes() throws {
        let dir = try int4Bundle(groupSize: 8, name: "back4")
        let model = try ReleaseModel(path: dir)
        XCTAssertEqual(model.quantization, LinearQuantization(.int4, groupSize: 8))
        XCTAssertEqual(model.weightTypeName, "int4")
        XCTAssertEqual(model.quantizedParts.count, 9)
        let reference = try SafetensorsFile(path: TestSupport.fixture("quantize/int4.safetensors"))
        let words = try reference.tensor(named: "group8.model.transformer.layers.2.linear1.weight_packed").integers(as: Int32.self)
        let s = try reference.tensor(named: "group8.model.transformer.layers.2.linear1.weight_scale").floats()
        let cols = 96
        var expected: [Float] = []
        for (i, word) in words.enumerated() {
            for k in 0..<8 {
                let c = (i * 8 + k) % cols, r = (i * 8 + k) / cols
                expected.append(Float(Int((UInt32(bitPattern: word) >> (4 * k)) & 0xF) - 8) * s[r * (cols / 8) + c / 8])
            }
        }
        XCTAssertEqual(try model.tensor("transformer.layers.2.linear1.weight").floats(), expected)
        let pt = scratch + "/back4.pt"
        try TrainingExport.writeTorch(model, dtype: nil, to: pt, replacing: false)
        XCTAssertEqual(try TorchCheckpoint(path: pt).tensor(named: "transformer.layers.2.linear1.weight").floats(), expected)
        let again = scratch + "/again4"
        try FileManager.default.createDirectory(atPath: again, withIntermediateDirectories: false)
        try BundleWriter.write(model, tokenizer: nil, options: .init(), into: again, progress: .silent)
        let first = try SafetensorsFile(path: dir + "/model.safetensors"), second = try SafetensorsFile(path: again + "/model.safetensors")
        XCTAssertEqual(first.tensorNames.sorted(), second.tensorNames.sorted())
        for name in first.tensorNames { XCTAssertTrue(try first.tensor(named: name).isBitIdentical(to: try second.tensor(named: name)), name) }
    }

    /// int4 needs whole int32 words a row and a group size that divides it; --keep leaves modules float32 and ignored.
    func testInt4GroupSizeAndKeep() throws {
        XCTAssertThrowsError(try int4Bundle(groupSize: 32, name: "bad32")) {
            XCTAssertEqual("\($0)", "model.transformer.layers.0.linear2.weight: --int4-group-size 32 does not divide the 200 columns; "
                           + "pass a --int4-group-size that divides every row, or 0 for one scale per row")
        }
        let dir = try int4Bundle(groupSize: 8, keep: ["*.linear2.weight"], name: "keep4")
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.linear2.weight").dtype, .f32)
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.linear1.weight_packed").dtype, .i32)
        XCTAssertEqual(try st.descriptor(named: "model.transformer.layers.1.linear1.weight_shape").shape, [2])
        XCTAssertTrue(try BundleVerifier.verify(path: dir, progress: .silent).passed)
    }

    func testInt8WeightsAndScalesEqualTorch() throws {
        let reference = try SafetensorsFile(path: TestSupport.fixture("quantize/int8.safetensors"))
        for (groupSize, prefix) in [(0, ""), (8, "group8.")] {
            let dir = try int8Bundle(groupSize: groupSize, name: "g\(groupSize)")
            let bundle = try SafetensorsFile(path: dir + "/model.safetensors")
            let names = reference.tensorNames.filter { $0.hasPrefix(prefix) && (prefix != "" || !$0.hasPrefix("group8.")) }
            XCTAssertEqual(names.count, 18, "out_proj, linear1, linear2 of 3 layers, each with its scale")
            try assertHolds(bundle, reference, names, prefix: prefix)
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
        XCTAssertEqual(model.quantization, LinearQuantization(.int8, groupSize: 0))
        XCTAssertEqual(model.weightTypeName, "int8")
        XCTAssertEqual(model.dominantDType, .f32)
        XCTAssertEqual(model.quantizedParts.count, 9)
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
            guard case let .quantizedGroupSize(_, flag, groupSize, columns)? = $0 as? CastError else { return XCTFail("\($0)") }
            XCTAssertEqual(flag, "--int8-group-size")
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
             "model.transformer.layers.0.linear1.weight is int8 but quantization_config ignores its module"),
        ] {
            XCTAssertTrue(original.contains(from), from)
            try writeText(original.replacingOccurrences(of: from, with: to), to: dir + "/config.json")
            try TestSupport.rehashManifest(dir, file: "config.json")
            let report = try BundleVerifier.verify(path: dir, progress: .silent)
            XCTAssertTrue(report.problems.contains { $0.hasPrefix("tensors: ") && $0.contains(fragment) }, fragment + ": \(report.problems)")
        }
    }
}
