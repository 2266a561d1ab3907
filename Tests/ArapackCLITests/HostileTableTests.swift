import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// Every malformed fixture of the project in one table (each generator's hostile.json: file → the message
/// fragment arapack must print), run through the main job, `arapack convert`: exit 2, one line on stderr
/// naming the problem, nothing at DST and no temporary left.
final class HostileTableTests: XCTestCase {
    func testEveryMalformedFixtureExitsTwoNamingTheProblem() throws {
        let scratch = try TestSupport.temporaryDirectory()
        defer { removeTree(scratch) }
        try writeText("{\"n_heads\": 4, \"activation\": \"gelu\", \"causal\": true, \"layer_norm_eps\": 1e-5}", to: scratch + "/heads.json")
        let trainingDict = TestSupport.fixture("torch/valid/training_dict.pt")
        // (table, how a row becomes a convert command line)
        let tables: [(String, (String) -> [String])] = [
            ("safetensors", { [TestSupport.fixture("safetensors/hostile/" + $0)] }),
            ("torch", { [TestSupport.fixture("torch/hostile/" + $0)] }),
            ("dcp", { [TestSupport.fixture("dcp/hostile/" + $0), "--config", scratch + "/heads.json"] }),
            ("release", { [TestSupport.fixture("release/hostile/" + $0)] }),
            ("tokenizer", { [trainingDict, "--tokenizer", TestSupport.fixture("tokenizer/hostile/" + $0)] }),
        ]
        var rows = 0
        for (table, command) in tables {
            let expected = try XCTUnwrap(TestSupport.loadJSON(TestSupport.fixture("\(table)/hostile.json")).members, table)
            for row in expected {
                let dst = scratch + "/out"
                let args = ["convert"] + command(row.key) + [dst, "--archive"]
                let r = try TestSupport.run(TestSupport.arapackBinary, args)
                let label = "\(table)/\(row.key)"
                XCTAssertEqual(r.status, 2, "\(label): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(label): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains(row.value.stringValue!), "\(label): expected \"\(row.value.stringValue!)\" in: \(r.stderr)")
                XCTAssertTrue(r.stderr.hasPrefix("arapack convert: error: "), "\(label): \(r.stderr)")
                XCTAssertEqual(try directoryEntries(scratch), ["heads.json"], "\(label): nothing at DST, no temporaries")
                rows += 1
            }
        }
        XCTAssertEqual(rows, 48 + 18 + 7 + 7 + 5)
    }
}
