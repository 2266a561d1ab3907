import ArapackTensor
@testable import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Checkpoints written by real PyTorch read back exactly; hostile ones are refused with their message.
final class TorchCheckpointTests: XCTestCase {
    func testValidCheckpointsReadExactlyWhatTorchHolds() throws {
        let files = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("torch/valid.json"))["files"]?.members)
        XCTAssertEqual(files.count, 14)
        for file in files {
            let ckpt = try XCTUnwrap(try SourceDetection.open(TestSupport.fixture("torch/valid/" + file.key)) as? TorchCheckpoint, file.key)
            XCTAssertEqual(ckpt.stateDictKey, file.value["state_dict_key"]?.stringValue, file.key)
            let tensors = try XCTUnwrap(file.value["tensors"]?.members)
            XCTAssertEqual(Set(ckpt.tensorNames), Set(tensors.map(\.key)), file.key)
            for t in tensors {
                let tensor = try ckpt.tensor(named: t.key)
                XCTAssertEqual(tensor.dtype.name, t.value["dtype"]?.stringValue, "\(file.key) \(t.key)")
                XCTAssertEqual(tensor.shape, t.value["shape"]?.elements?.compactMap(\.intValue), "\(file.key) \(t.key)")
                XCTAssertEqual(tensor.bytes, TestSupport.bytes(hex: t.value["hex"]!.stringValue!), "\(file.key) \(t.key)")
            }
            let shared = (file.value["shared"]?.elements ?? []).map { Set($0.elements!.map(\.stringValue!)) }
            XCTAssertEqual(Set(ckpt.sharedGroups.map(Set.init)), Set(shared), file.key)
        }
    }

    func testTiedPairIsOneStorageInAPlainStateDictAndTwoUnderFSDP() throws {
        let bare = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/bare_state_dict.pt"))
        XCTAssertEqual(bare.sharedGroups, [["token_embedding.weight", "lm_head.weight"]])
        XCTAssertTrue(try bare.tensor(named: "lm_head.weight").sharesStorage(with: try bare.tensor(named: "token_embedding.weight")))
        let big = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/big_endian.pt"))
        XCTAssertTrue(try big.tensor(named: "lm_head.weight").sharesStorage(with: try big.tensor(named: "token_embedding.weight")),
                      "byte-swapping keeps the tie")
        let fsdp = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/fsdp_full_state_dict.pt"))
        XCTAssertEqual(fsdp.sharedGroups, [])
        XCTAssertTrue(try fsdp.tensor(named: "lm_head.weight").isBitIdentical(to: try fsdp.tensor(named: "token_embedding.weight")))
        // FSDP1's parameters are views into one flat parameter per unit; only the tied pair is the same view.
        let flat = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/fsdp1_wrapped_names.pt"))
        XCTAssertEqual(flat.sharedGroups, [["_fsdp_wrapped_module.token_embedding.weight", "_fsdp_wrapped_module.lm_head.weight"]])
    }

    /// The model's tensors are views of the mapped file, each inside its own storage's entry: no copy, and no byte of
    /// the optimizer's storages (the moments a training dict also holds) is served for the model.
    func testModelReadIsZeroCopyAndTouchesOnlyModelStorages() throws {
        let ckpt = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/training_dict.pt"))
        XCTAssertEqual(ckpt.stateDictKey, "model")
        let base = ckpt.archive.file.withUnsafeBytes { Int(bitPattern: $0.baseAddress) }
        var modelKeys = Set<String>()
        for name in ckpt.tensorNames {
            let t = try ckpt.tensor(named: name)
            XCTAssertTrue(t.storage.isMapped, "\(name) is served from the mapping")
            let key = ckpt.prefix + "data/" + (try ckpt.reference(of: name)).storageKey
            modelKeys.insert(key)
            let entry = try XCTUnwrap(ckpt.archive.entry(named: key), key)
            let entryBytes = (ckpt.archive.base + entry.dataOffset)..<(ckpt.archive.base + entry.dataOffset + entry.size)
            let served = t.storage.withUnsafeBytes { b in (Int(bitPattern: b.baseAddress) - base)..<(Int(bitPattern: b.baseAddress) - base + b.count) }
            XCTAssertTrue(entryBytes.contains(served.lowerBound) && served.upperBound <= entryBytes.upperBound, "\(name): \(served) outside \(key) \(entryBytes)")
        }
        let allStorages = ckpt.archive.entries.filter { $0.name.contains("/data/") }.count
        XCTAssertGreaterThan(allStorages, modelKeys.count * 2, "the optimizer's moments exist but are not the model's")
        guard case let .dict(root) = ckpt.root else { return XCTFail() }
        XCTAssertEqual(root["step"]?.intValue, 2)
        XCTAssertEqual(root["config"]?.dictValue?["n_heads"]?.intValue, 4)
    }

    func testViewsAreMadeContiguousCorrectly() throws {
        let ckpt = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/views.pt"))
        let base = (0..<60).map { Float($0) / 3 }
        let transposed = try ckpt.tensor(named: "transposed")
        XCTAssertEqual(transposed.shape, [10, 6])
        XCTAssertFalse(transposed.storage.isMapped, "a transpose is gathered into owned memory")
        XCTAssertEqual(try transposed.floats()[0..<3], [base[0], base[10], base[20]])
        XCTAssertEqual(try ckpt.tensor(named: "expanded").floats(), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
        XCTAssertEqual(try ckpt.tensor(named: "narrow_offset").floats(), Array(base[7..<19]))
        XCTAssertEqual(try ckpt.tensor(named: "scalar").shape, [])
        XCTAssertEqual(try ckpt.tensor(named: "empty").shape, [0, 3])
    }

    func testHostileCheckpointsAreRefusedAndNothingRuns() throws {
        let sentinel = "/tmp/arapack_pwned_by_fixture"
        try? FileManager.default.removeItem(atPath: sentinel)
        let table = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("torch/hostile.json")).members)
        XCTAssertEqual(Set(table.map(\.key)), Set(Self.hostileCases.keys))
        for row in table {
            XCTAssertThrowsError(try SourceDetection.open(TestSupport.fixture("torch/hostile/" + row.key)), row.key) { error in
                XCTAssertEqual(TestSupport.caseName(error), Self.hostileCases[row.key], row.key)
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: sentinel))
    }

    /// The error case each hostile checkpoint is refused with (the messages are HostileTableTests', through the CLI).
    static let hostileCases: [String: String] = [
        "broadcast_bomb.pt": "TorchError.storage", "deflate_bomb.pt": "ZipError.expansionLimit", "legacy_format.pt": "TorchError.legacyFormat",
        "memo_bomb.pt": "TorchError.noStateDict", "missing_storage.pt": "TorchError.storage", "no_state_dict.pt": "TorchError.noStateDict",
        "not_a_zip.pt": "ZipError.notAZip", "numpy_rng_state.pt": "TorchError.unsafePickle", "path_traversal.pt": "ZipError.unsafeName",
        "pickle_truncated.pt": "TorchError.unsafePickle", "reduce_eval.pt": "TorchError.unsafePickle",
        "reduce_os_system.pt": "TorchError.unsafePickle", "reduce_subprocess.pt": "TorchError.unsafePickle",
        "short_storage.pt": "TorchError.storage", "stack_global_obfuscated.pt": "TorchError.unsafePickle",
        "stride_out_of_bounds.pt": "TorchError.badTensor", "truncated.pt": "ZipError.notAZip", "unknown_opcode.pt": "TorchError.unsafePickle",
    ]

    func testScanModeListsEveryGlobalWithoutRunningIt() throws {
        let ckpt = try TorchCheckpoint(path: TestSupport.fixture("torch/hostile/reduce_os_system.pt"), allowed: nil)
        let names = ckpt.globals.map(\.global.description)
        XCTAssertTrue(names.contains("posix.system"))
        XCTAssertTrue(names.contains("torch._utils._rebuild_tensor_v2"))
        XCTAssertEqual(TorchGlobals.classify(PickleGlobal("posix", "system")), .dangerous)
        XCTAssertEqual(TorchGlobals.classify(PickleGlobal("__builtin__", "eval")), .dangerous)
        XCTAssertEqual(TorchGlobals.classify(PickleGlobal("commands", "check_output")), .dangerous)
        XCTAssertEqual(TorchGlobals.classify(PickleGlobal("numpy._core.multiarray", "_reconstruct")), .unknown)
        XCTAssertEqual(TorchGlobals.classify(PickleGlobal("torch", "FloatStorage")), .safe)
    }
}
