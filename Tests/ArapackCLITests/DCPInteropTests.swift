import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// DCP folders arapack writes load with `torch.distributed.checkpoint.load` into `{"model": state_dict}`
/// and equal the sources exactly. Runs where `ARAPACK_PYTHON` has torch.
final class DCPInteropTests: XCTestCase {
    func testDCPLoadReadsWhatArapackWrites() throws {
        let python = try TestSupport.interopPython(importing: ["torch"])
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["bare_state_dict", "training_dict", "bf16", "views", "fsdp_full_state_dict", "big_endian", "ddp_module_prefix"]
        for name in names {
            let source = try TorchCheckpoint(path: TestSupport.fixture("torch/valid/\(name).pt"))
            let tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
            try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: false)
            try DCPWriter.write(stateDict: tensors, into: dir + "/" + name)
        }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_dcp.py").path
        let r = try TestSupport.run(python, [script, dir, TestSupport.fixture("torch/valid")])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("\(names.count) passed, 0 failed"), r.stdout)
    }
}
