import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Checkpoints arapack writes load in PyTorch with `weights_only=True`, equal the sources exactly and keep
/// the tie. Runs where `ARAPACK_PYTHON` has torch (scripts/test.sh installs it when a local wheel exists).
final class TorchInteropTests: XCTestCase {
    func testTorchLoadsWhatArapackWrites() throws {
        let python = try TestSupport.interopPython(importing: ["torch"])
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["bare_state_dict.pt", "training_dict.pt", "bf16.pt", "views.pt", "fsdp_full_state_dict.pt", "big_endian.pt", "ddp_module_prefix.pt",
                     "fsdp1_full_state_dict.pt", "fsdp1_wrapped_names.pt"]
        for name in names {
            let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/" + name))
            let tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
            let config = source.summary.config.map { [JSONValue.Member("config", $0)] } ?? []
            try TorchCheckpointWriter.write(stateDict: tensors, extra: config + [.init("step", .int(source.summary.step ?? 0))], to: dir + "/" + name)
        }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_torch.py").path
        let r = try TestSupport.run(python, [script, dir, TestSupport.fixture("torch/valid")])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("\(names.count) passed, 0 failed"), r.stdout)
    }
}
