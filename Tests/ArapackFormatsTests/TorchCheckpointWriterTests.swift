import ArapackTensor
@testable import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

final class TorchCheckpointWriterTests: XCTestCase {
    func testWrittenCheckpointReadsBackExactlyWithTieAndAlignment() throws {
        let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/bare_state_dict.pt"))
        let tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let extra: [JSONValue.Member] = [.init("config", .object(["n_layers": .int(2), "causal": .bool(true), "layer_norm_eps": .number("1e-05")])),
                                         .init("step", .int(70_000))]
        try TorchCheckpointWriter.write(stateDict: tensors, extra: extra, to: dir + "/a.pt")
        try TorchCheckpointWriter.write(stateDict: tensors, extra: extra, to: dir + "/b.pt")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/a.pt")), try Data(contentsOf: URL(fileURLWithPath: dir + "/b.pt")), "deterministic")
        let back = try TorchCheckpoint(path: dir + "/a.pt")
        XCTAssertEqual(back.stateDictKey, "model")
        XCTAssertEqual(back.tensorNames, source.tensorNames)
        for (name, t) in tensors { XCTAssertTrue(try back.tensor(named: name).isBitIdentical(to: t), name) }
        XCTAssertEqual(back.sharedGroups, [["token_embedding.weight", "lm_head.weight"]])
        XCTAssertEqual(back.summary.step, 70_000)
        XCTAssertEqual(back.summary.config?["layer_norm_eps"]?.doubleValue, 1e-5)
        XCTAssertEqual(back.archive.entries.filter { $0.name.contains("/data/") }.count, tensors.count - 1, "the tied pair is one storage")
        for e in back.archive.entries {
            XCTAssertEqual(e.dataOffset % 64, 0, e.name)
            XCTAssertNoThrow(try back.archive.verifyChecksum(of: e.name))
        }
    }

    func testNonContiguousAndHalfPrecisionSourcesAndRefusals() throws {
        let views = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/views.pt"))
        let tensors = try views.tensorNames.map { (name: $0, tensor: try views.tensor(named: $0)) }
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TorchCheckpointWriter.write(stateDict: tensors, to: dir + "/v.pt")
        let back = try TorchCheckpoint(path: dir + "/v.pt")
        for (name, t) in tensors { XCTAssertTrue(try back.tensor(named: name).isBitIdentical(to: t), name) }
        let u16 = try Tensor(dtype: .u16, shape: [1], bytes: [1, 0])
        XCTAssertThrowsError(try TorchCheckpointWriter.write(stateDict: [("x", u16)], to: dir + "/u.pt")) {
            XCTAssertEqual($0 as? TorchError, .badTensor(file: dir + "/u.pt", tensor: "x", detail: "dtype U16 cannot be written to a torch checkpoint"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/u.pt"))
    }

    /// Every dtype a typed storage holds (f32, f64, f16, bf16, i64, i32, i16, int8, u8, bool) round-trips.
    func testEveryTypedStorageDtypeRoundTrips() throws {
        let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/all_dtypes.pt"))
        let writable = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
            .filter { TorchCheckpointWriter.storageClass[$0.tensor.dtype] != nil }
        XCTAssertEqual(Set(writable.map(\.tensor.dtype)), [.f32, .f64, .f16, .bf16, .i64, .i32, .i16, .i8, .u8, .bool])
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try TorchCheckpointWriter.write(stateDict: writable, to: dir + "/all.pt")
        let back = try TorchCheckpoint(path: dir + "/all.pt")
        for (name, t) in writable { XCTAssertTrue(try back.tensor(named: name).isBitIdentical(to: t), name) }
        XCTAssertEqual(try back.tensor(named: "i8").integers(as: Int8.self), [-128, 127])
    }
}
