import ArapackTensor
@testable import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Every valid fixture (written by the real safetensors/huggingface_hub packages) reads back with the values
/// torch recorded; every hostile fixture is refused with the message its row names.
final class SafetensorsFixtureTests: XCTestCase {
    func testValidFixturesReadExactValues() throws {
        let expected = try TestSupport.loadJSON(TestSupport.fixture("safetensors/valid.json"))
        let files = try XCTUnwrap(expected["files"]?.members)
        XCTAssertEqual(files.count, 6)
        var checkedFloats = 0
        for file in files {
            let source = try SourceDetection.open(TestSupport.fixture("safetensors/valid/" + file.key))
            let tensors = try XCTUnwrap(file.value["tensors"]?.members)
            XCTAssertEqual(Set(source.tensorNames), Set(tensors.map(\.key)), file.key)
            if let meta = file.value["metadata"]?.members {
                let actual = (source as? SafetensorsFile)?.metadata ?? (source as? ShardedSafetensors)?.shards[0].file.metadata
                XCTAssertEqual(actual, Dictionary(uniqueKeysWithValues: meta.map { ($0.key, $0.value.stringValue!) }), file.key)
            }
            for t in tensors {
                let tensor = try source.tensor(named: t.key)
                XCTAssertEqual(tensor.dtype.name, t.value["dtype"]?.stringValue, t.key)
                XCTAssertEqual(tensor.shape, t.value["shape"]?.elements?.compactMap(\.intValue), t.key)
                XCTAssertEqual(tensor.bytes, TestSupport.bytes(hex: t.value["hex"]!.stringValue!), "\(file.key) \(t.key)")
                if let bits = t.value["float32_bits"]?.elements?.compactMap(\.intValue) {
                    let floats = try tensor.floats()
                    XCTAssertEqual(floats.count, bits.count)
                    for (f, b) in zip(floats, bits) {
                        let torchValue = Float(bitPattern: UInt32(b))
                        if torchValue.isNaN { XCTAssertTrue(f.isNaN, t.key) } else { XCTAssertEqual(f.bitPattern, UInt32(b), "\(t.key): \(f) vs \(torchValue)") }
                        checkedFloats += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checkedFloats, 40)
    }

    func testIntegerAccessorsMatchTorch() throws {
        let file = try SafetensorsFile(path: TestSupport.fixture("safetensors/valid/all_dtypes.safetensors"))
        XCTAssertEqual(try file.tensor(named: "i64").integers(as: Int64.self), [Int64.min, Int64.max, 42])
        XCTAssertEqual(try file.tensor(named: "u64").integers(as: UInt64.self), [0, UInt64.max])
        XCTAssertEqual(try file.tensor(named: "i32").integers(as: Int32.self), [Int32.min, Int32.max, 7, -7])
        XCTAssertEqual(try file.tensor(named: "bool").integers(as: UInt8.self), [1, 0, 1])
        XCTAssertEqual(try file.tensor(named: "scalar_f64").doubles(), [3.25])
        XCTAssertEqual(try file.tensor(named: "scalar_i64").shape, [])
        XCTAssertEqual(try file.tensor(named: "empty_f32").shape, [0, 4])
        XCTAssertTrue(try file.tensor(named: "f32").storage.isMapped)
        let unaligned = try SafetensorsFile(path: TestSupport.fixture("safetensors/valid/unaligned.safetensors"))
        XCTAssertEqual(try unaligned.tensor(named: "w").floats(), [1.0, -2.5, 1e-3])
    }

    /// Each hostile file is refused with the error case its broken rule calls for (the message each prints is
    /// HostileTableTests' table, through the CLI).
    func testHostileFixturesAreRefusedByTheirCase() throws {
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("safetensors/hostile.json")).members)
        XCTAssertEqual(Set(table.map(\.key)), Set(Self.hostileCases.keys))
        for row in table {
            XCTAssertThrowsError(try SourceDetection.open(TestSupport.fixture("safetensors/hostile/" + row.key)), row.key) { error in
                XCTAssertEqual(TestSupport.caseName(error), Self.hostileCases[row.key], row.key)
            }
        }
    }

    static let hostileCases: [String: String] = [
        "bad_utf8.safetensors": "SafetensorsError.invalidHeaderJSON", "control_char_in_name.safetensors": "SafetensorsError.invalidHeaderJSON",
        "duplicate_key.safetensors": "SafetensorsError.duplicateKey", "empty.safetensors": "SafetensorsError.fileTooSmall",
        "entry_not_object.safetensors": "SafetensorsError.invalidEntry", "header_length_giant.safetensors": "SafetensorsError.headerTooLarge",
        "header_length_just_over_limit.safetensors": "SafetensorsError.headerTooLarge",
        "header_length_u64_max.safetensors": "SafetensorsError.headerTooLarge",
        "header_past_eof.safetensors": "SafetensorsError.headerPastEndOfFile", "index_absolute_path": "SafetensorsError.invalidIndex",
        "index_bad_shard": "SafetensorsError.bufferLengthMismatch", "index_missing_shard": "SafetensorsError.invalidIndex",
        "index_no_weight_map": "SafetensorsError.invalidIndex", "index_not_json": "SafetensorsError.invalidIndex",
        "index_parent_path": "SafetensorsError.invalidIndex", "index_tensor_absent": "SafetensorsError.invalidIndex",
        "index_total_size_wrong": "SafetensorsError.invalidIndex", "index_unlisted_tensor": "SafetensorsError.invalidIndex",
        "json_array.safetensors": "SafetensorsError.headerNotObject", "json_trailing_garbage.safetensors": "SafetensorsError.invalidHeaderJSON",
        "lone_surrogate.safetensors": "SafetensorsError.invalidHeaderJSON", "lowercase_dtype.safetensors": "SafetensorsError.unknownDType",
        "metadata_array.safetensors": "SafetensorsError.invalidMetadata", "metadata_not_string.safetensors": "SafetensorsError.invalidMetadata",
        "missing_dtype.safetensors": "SafetensorsError.invalidEntry", "missing_shape.safetensors": "SafetensorsError.invalidEntry",
        "nesting_bomb.safetensors": "SafetensorsError.invalidHeaderJSON", "newer_dtype_f4.safetensors": "SafetensorsError.unknownDType",
        "not_json.safetensors": "SafetensorsError.invalidHeaderJSON", "offsets_gap.safetensors": "SafetensorsError.offsetsNotContiguous",
        "offsets_negative.safetensors": "SafetensorsError.invalidEntry",
        "offsets_not_from_zero.safetensors": "SafetensorsError.offsetsNotContiguous",
        "offsets_one_value.safetensors": "SafetensorsError.invalidEntry", "offsets_overlap.safetensors": "SafetensorsError.offsetsNotContiguous",
        "offsets_past_buffer.safetensors": "SafetensorsError.bufferLengthMismatch",
        "offsets_reversed.safetensors": "SafetensorsError.invalidEntry", "seven_bytes.safetensors": "SafetensorsError.fileTooSmall",
        "shape_fractional.safetensors": "SafetensorsError.invalidEntry", "shape_huge_literal.safetensors": "SafetensorsError.shapeOverflow",
        "shape_negative.safetensors": "SafetensorsError.invalidEntry", "shape_offset_mismatch.safetensors": "SafetensorsError.sizeMismatch",
        "shape_overflow.safetensors": "SafetensorsError.shapeOverflow", "shape_overflow_bytes.safetensors": "SafetensorsError.shapeOverflow",
        "trailing_bytes_polyglot.safetensors": "SafetensorsError.bufferLengthMismatch",
        "truncated_data.safetensors": "SafetensorsError.bufferLengthMismatch",
        "truncated_header.safetensors": "SafetensorsError.headerPastEndOfFile", "unknown_dtype.safetensors": "SafetensorsError.unknownDType",
        "unknown_field.safetensors": "SafetensorsError.invalidEntry",
    ]


    /// Re-writing a file the Python package wrote (same metadata) reproduces it byte for byte.
    func testWriterMatchesReferenceWriterByteForByte() throws {
        let path = TestSupport.fixture("safetensors/valid/all_dtypes.safetensors")
        let source = try SafetensorsFile(path: path)
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tensors = try source.tensorNames.reversed().map { (name: $0, tensor: try source.tensor(named: $0)) }
        try SafetensorsWriter.write(tensors, to: dir + "/a.safetensors")
        try SafetensorsWriter.write(tensors.shuffled(), to: dir + "/b.safetensors")
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/a.safetensors")), original)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/b.safetensors")), original)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["a.safetensors", "b.safetensors"])
    }

    func testWriterMetadataAndNameChecks() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = try Tensor(float32: [1, 2], shape: [2])
        try SafetensorsWriter.write([("x", t)], metadata: ["model.lm_head.weight": "model.token_embedding.weight", "b": "é"], to: dir + "/m.safetensors")
        let back = try SafetensorsFile(path: dir + "/m.safetensors")
        XCTAssertEqual(back.metadata, ["format": "pt", "model.lm_head.weight": "model.token_embedding.weight", "b": "é"])
        XCTAssertEqual(back.header.dataStart % 8, 0)
        XCTAssertThrowsError(try SafetensorsWriter.write([("x", t), ("x", t)], to: dir + "/d.safetensors"))
        XCTAssertThrowsError(try SafetensorsWriter.write([("__metadata__", t)], to: dir + "/r.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/d.safetensors"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["m.safetensors"])
    }

    func testShardedWriteAndReadBack() throws {
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tensors = try (0..<5).map { i in (name: "layer.\(i).weight", tensor: try Tensor(float32: (0..<100).map { Float($0 * i) }, shape: [10, 10])) }
        let written = try SafetensorsWriter.writeSharded(tensors, directory: dir, maxShardSize: 500)
        XCTAssertEqual(written, (1...5).map { SafetensorsWriter.shardFileName(stem: "model", index: $0, count: 5) } + ["model.safetensors.index.json"])
        let sharded = try XCTUnwrap(try SourceDetection.open(dir) as? ShardedSafetensors)
        XCTAssertEqual(sharded.tensorNames, tensors.map(\.name))
        for (name, t) in tensors { XCTAssertTrue(try sharded.tensor(named: name).isBitIdentical(to: t)) }
        XCTAssertEqual(sharded.indexMetadata["total_size"]?.intValue, 2000)
        try FileManager.default.createDirectory(atPath: dir + "/one", withIntermediateDirectories: false)
        let single = try SafetensorsWriter.writeSharded(tensors, directory: dir + "/one", maxShardSize: nil)
        XCTAssertEqual(single, ["model.safetensors"])
    }

    func testReferenceShardedIndexReads() throws {
        let s = try ShardedSafetensors(indexPath: TestSupport.fixture("safetensors/valid/sharded/model.safetensors.index.json"))
        XCTAssertEqual(s.shards.count, 2)
        XCTAssertEqual(s.filePaths.count, 3)
        XCTAssertEqual(try s.descriptor(named: "model.norm.bias"), TensorDescriptor(dtype: .bf16, shape: [8]))
    }

    /// The streaming data check agrees with whole-file hashing and per-tensor scans at any chunk size.
    func testStreamingDataCheckAcrossChunkBoundaries() throws {
        let path = TestSupport.fixture("safetensors/valid/all_dtypes.safetensors")
        let file = try SafetensorsFile(path: path)
        let wholeDigest = try SHA256.hex(ofFile: path)
        let expected = Dictionary(uniqueKeysWithValues: try file.tensorNames.map { ($0, try file.tensor(named: $0).nonFiniteCount()) })
        XCTAssertEqual(expected.values.reduce(0, +), 11)
        for chunk in [1, 7, 8, 64, 1000, 1 << 20] {
            let check = try file.checkData(chunkSize: chunk)
            XCTAssertEqual(check.sha256, wholeDigest, "chunk \(chunk)")
            XCTAssertEqual(check.nonFinite, expected, "chunk \(chunk)")
        }
    }
}
