import ArapackFormats
import ArapackTensor
import ArapackTestSupport
import Foundation
import XCTest

/// Files arapack writes are read by the official `safetensors` package with torch's values.
/// Runs where `ARAPACK_PYTHON` names a Python with safetensors (CI sets it up; see README).
final class SafetensorsInteropTests: XCTestCase {
    func testOfficialPackageReadsWhatArapackWrites() throws {
        let python = try TestSupport.interopPython(importing: ["safetensors", "numpy"])
        let expected = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("safetensors/valid.json"))["files"]?.members)
        let dir = try TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for file in expected {
            let source = try SourceDetection.open(TestSupport.fixture("safetensors/valid/" + file.key))
            let tensors = try source.tensorNames.map { (name: $0, tensor: try source.tensor(named: $0)) }
            if source is ShardedSafetensors {
                try FileManager.default.createDirectory(atPath: dir + "/" + file.key, withIntermediateDirectories: false)
                let names = try SafetensorsWriter.writeSharded(tensors, directory: dir + "/" + file.key, maxShardSize: 300)
                XCTAssertGreaterThan(names.count, 2)
            } else {
                try SafetensorsWriter.write(tensors, to: dir + "/" + file.key)
                // Deterministic: a second write gives the same bytes.
                try SafetensorsWriter.write(tensors.reversed(), to: dir + "/again")
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file.key)),
                               try Data(contentsOf: URL(fileURLWithPath: dir + "/again")))
            }
        }
        let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_safetensors.py").path
        let r = try TestSupport.run(python, [script, dir, TestSupport.fixture("safetensors/valid.json")])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("\(expected.count) passed, 0 failed"), r.stdout)
    }
}
