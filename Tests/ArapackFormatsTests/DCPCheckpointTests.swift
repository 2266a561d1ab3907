import ArapackTensor
@testable import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// DCP directories written by real FSDP (2 processes, gloo) read back exactly as `dcp_to_torch_save` gives them.
final class DCPCheckpointTests: XCTestCase {
    func testShardedAndReplicatedCheckpointsEqualTheReferenceConversion() throws {
        let expected = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("dcp/valid.json"))["checkpoints"]?.members)
        XCTAssertEqual(expected.map(\.key).sorted(), ["full_shard", "no_shard"])
        for ckpt in expected {
            let dcp = try XCTUnwrap(try SourceDetection.open(TestSupport.fixture("dcp/valid/" + ckpt.key)) as? DCPCheckpoint)
            XCTAssertEqual(dcp.modelPrefix, "model.")
            let model = try XCTUnwrap(ckpt.value["model"]?.members)
            XCTAssertEqual(Set(dcp.tensorNames), Set(model.map(\.key)), ckpt.key)
            for t in model {
                let tensor = try dcp.tensor(named: t.key)
                XCTAssertEqual(tensor.dtype.name, t.value["dtype"]?.stringValue)
                XCTAssertEqual(tensor.shape, t.value["shape"]?.elements?.compactMap(\.intValue))
                XCTAssertEqual(tensor.bytes, TestSupport.bytes(hex: t.value["hex"]!.stringValue!), "\(ckpt.key) \(t.key)")
            }
            let optimTensors = dcp.entries.filter { $0.fqn.hasPrefix("optim.state.") }.count
            XCTAssertEqual(optimTensors, ckpt.value["optim_tensors"]?.intValue, ckpt.key)
            XCTAssertFalse(dcp.bytesItems.isEmpty)
        }
    }

    func testWrittenDirectoryReadsBackExactlyAndDeterministically() throws {
        let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        let tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
        var digests: [[String]] = []
        for run in 0..<2 {
            let dir = try TestSupport.temporaryDirectory()
            defer { removeTree(dir) }
            try DCPWriter.write(stateDict: tensors, into: dir)
            let back = try DCPCheckpoint(directory: dir)
            XCTAssertEqual(back.modelPrefix, "model.")
            XCTAssertEqual(back.tensorNames, source.tensorNames)
            for (name, t) in tensors {
                let read = try back.tensor(named: name)
                XCTAssertEqual(read.dtype, t.dtype, name)
                XCTAssertEqual(read.shape, t.shape, name)
                XCTAssertTrue(read.isBitIdentical(to: t), name)
                XCTAssertEqual(try back.entry(named: name).chunks.count, 1)
            }
            digests.append(try [".metadata", "__0_0.distcp"].map { try SHA256.hex(ofFile: dir + "/" + $0) })
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), [".metadata", "__0_0.distcp"], "run \(run): no temporaries left")
        }
        XCTAssertEqual(digests[0], digests[1], "same input, same bytes")
    }

    func testShardLayouts() throws {
        let sharded = try DCPCheckpoint(directory: TestSupport.fixture("dcp/valid/full_shard"))
        let weight = try sharded.entry(named: "transformer.layers.0.linear1.weight")
        XCTAssertEqual(weight.chunks.map(\.offsets), [[0, 0], [32, 0]], "FULL_SHARD splits dim 0 across the two ranks")
        XCTAssertEqual(Set(weight.chunks.map(\.file)), ["__0_0.distcp", "__1_0.distcp"])
        XCTAssertFalse(try sharded.tensor(named: "transformer.layers.0.linear1.weight").storage.isMapped)
        let replicated = try DCPCheckpoint(directory: TestSupport.fixture("dcp/valid/no_shard"))
        for name in replicated.tensorNames {
            XCTAssertEqual(try replicated.entry(named: name).chunks.count, 1, "NO_SHARD: one chunk, deduplicated across ranks")
            XCTAssertTrue(try replicated.tensor(named: name).storage.isMapped, "a single chunk is served zero-copy")
        }
    }

    func testDamagedCheckpointsAreRefusedNamingTheProblem() throws {
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("dcp/hostile.json")).members)
        XCTAssertEqual(Set(table.map(\.key)), Set(Self.hostileCases.keys))
        for row in table {
            XCTAssertThrowsError(try {
                let source = try SourceDetection.open(TestSupport.fixture("dcp/hostile/" + row.key))
                for name in source.tensorNames { _ = try source.tensor(named: name) }
            }(), row.key) { error in
                XCTAssertEqual(TestSupport.caseName(error), Self.hostileCases[row.key], row.key)
            }
        }
    }

    /// The error case each damaged checkpoint is refused with (the messages are HostileTableTests', through the CLI).
    static let hostileCases: [String: String] = [
        "declared_dtype_mismatch": "DCPError.chunk", "foreign_global": "DCPError.metadata", "missing_chunk": "DCPError.chunk",
        "missing_distcp": "DCPError.chunk", "overlapping_chunks": "DCPError.chunk", "path_escape": "DCPError.metadata",
        "truncated_distcp": "DCPError.chunk",
    ]

    /// Chunk coverage: row shards (FSDP's layout) in O(n log n), so 200,000 chunks check at once; overlaps
    /// and gaps found either way; other layouts pairwise, refused past the stated chunk limit.
    func testChunkCoverageScalesAndStatesItsLimits() throws {
        func chunk(_ offsets: [Int], _ sizes: [Int]) -> DCPCheckpoint.Chunk {
            DCPCheckpoint.Chunk(offsets: offsets, sizes: sizes, file: "__0_0.distcp", byteRange: 0..<0)
        }
        func check(_ shape: [Int], _ chunks: [DCPCheckpoint.Chunk]) -> String? {
            do { try DCPCheckpoint.checkCoverage(fqn: "w", shape: shape, chunks: chunks, directory: "d"); return nil } catch {
                guard case let .chunk("d", "w", detail)? = error as? DCPError else { return "not DCPError.chunk for d, w: \(error)" }
                return detail
            }
        }
        let n = 200_000
        let rows = (0..<n).reversed().map { chunk([$0, 0], [1, 4]) }
        let start = Date()
        XCTAssertNil(check([n, 4], rows))
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "not quadratic")
        var overlapping = rows
        overlapping[7] = chunk([n - 9, 0], [2, 4])
        XCTAssertTrue(check([n, 4], overlapping)?.contains("overlap") == true)
        XCTAssertTrue(check([n, 4], Array(rows.dropFirst()))?.contains("missing chunk") == true)
        // Split along the second dimension too: compared pairwise, at most 4,096 chunks.
        let grid = (0..<64).flatMap { r in (0..<64).map { c in chunk([r, c], [1, 1]) } }
        XCTAssertNil(check([64, 64], grid))
        var clash = grid
        clash[100] = chunk([0, 0], [1, 1])
        XCTAssertTrue(check([64, 64], clash)?.contains("overlap") == true)
        let big = (0..<65).flatMap { r in (0..<64).map { c in chunk([r, c], [1, 1]) } }
        XCTAssertTrue(check([65, 64], big)?.contains("at most 4096") == true, check([65, 64], big) ?? "")
        XCTAssertTrue(check([1 << 21, 1], (0..<(1 << 20) + 1).map { chunk([$0, 0], [1, 1]) })?.contains("at most 1048576 per tensor") == true)
    }
}
