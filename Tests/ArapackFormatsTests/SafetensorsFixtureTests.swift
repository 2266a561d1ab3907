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

    func testHostileFixturesAreRefusedWithTheirMessage() throws {
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("safetensors/hostile.json")).members)
        XCTAssertGreaterThanOrEqual(table.count, 25)
        for row in table {
            let fragment = try XCTUnwrap(row.value.stringValue)
            XCTAssertThrowsError(try SourceDetection.open(TestSupport.fixture("safetensors/hostile/" + row.key)), row.key) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(row.key): \"\(error)\" lacks \"\(fragment)\"")
                XCTAssertFalse("\(error)".contains("\n"), row.key)
            }
        }
    }

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
