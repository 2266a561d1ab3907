import ArapackFormats
import ArapackTestSupport
import Foundation
import XCTest

/// `--training-log`: the four training-curve plots a bundle carries, decoded by a real XML parser and checked point by
/// point against the log (scripts/interop_plots.py, on logs its csv and json modules write as WandB exports a run);
/// long logs sampled within bounded memory; malformed logs refused naming the file and the line.
final class TrainingCurveTests: XCTestCase {
    var scratch = ""
    override func setUpWithError() throws { scratch = try TestSupport.temporaryDirectory() }
    override func tearDown() { removeTree(scratch) }

    let source = TestSupport.fixture("trained/arafusion_tiny_ar.pt")
    let script = TestSupport.repositoryRoot.appendingPathComponent("scripts/interop_plots.py").path

    func testThePlotsDrawTheLoggedPoints() throws {
        let python = try TestSupport.interopPython(importing: ["csv", "xml.etree.ElementTree"])
        var svgs: [[String: Data]] = []
        for (rows, kind) in [(5000, "csv"), (5000, "jsonl"), (1_000_000, "csv")] {
            let log = scratch + "/log-\(rows).\(kind)", bundle = scratch + "/bundle-\(rows)-\(kind)"
            XCTAssertEqual(try TestSupport.run(python, [script, "make", log, String(rows), kind]).status, 0)
            let args = ["convert", source, bundle, "--training-log", log, "--tokenizer", TestSupport.fixture("trained/tokenizer")]
            let peak = try TestSupport.peakMemory(TestSupport.arapackBinary, args)
            XCTAssertEqual(peak.status, 0)
            XCTAssertLessThan(peak.peakKiB, 250 << 10, "\(rows) rows: a long log is sampled, not held")
            let check = try TestSupport.run(python, [script, "check", bundle, log])
            XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
            let points = try XCTUnwrap(JSONParser.parse(Array(check.stdout.utf8))["points"])
            XCTAssertEqual(points["training_loss.svg:train"]?.intValue.map { $0 <= 2049 && $0 > 1000 }, true, check.stdout)
            if rows == 5000 { XCTAssertEqual(points["validation_loss.svg:validation"]?.intValue, 500, "every logged validation loss is drawn") }
            let card = try String(contentsOfFile: bundle + "/README.md", encoding: .utf8)
            for name in ["training_loss.svg", "validation_loss.svg", "training_validation_loss.svg", "learning_rate.svg"] {
                XCTAssertTrue(card.contains("](\(name))"), name)
            }
            XCTAssertTrue(card.contains("From the run's log (\(rows) steps logged): final training loss "), card)
            XCTAssertEqual(try TestSupport.arapack("verify", bundle).status, 0)
            if rows == 5000 {
                svgs.append(try Dictionary(uniqueKeysWithValues: ["training_loss.svg", "learning_rate.svg"].map {
                    ($0, try Data(contentsOf: URL(fileURLWithPath: bundle + "/" + $0)))
                }))
            }
        }
        XCTAssertEqual(svgs[0], svgs[1], "the same run as CSV or JSON lines draws the same bytes")
    }

    func testMalformedLogsAreRefusedNamingTheLine() throws {
        let header = "_step,train/loss,val/loss,lr\n"
        let cases: [(name: String, text: String, fragment: String)] = [
            ("log.csv", "_step,train/loss,lr\n0,1,0.1\n", "log.csv:1: no validation loss column (one of val/loss, val_loss, eval/loss"),
            ("log.csv", header + "0,3,3,0.1\n5,2,2,0.1\n4,1,1,0.1\n", "log.csv:4: step 4 is not after step 5 on line 3: steps must increase"),
            ("log.csv", header + "0,3,3,0.1\n1022222222222222222222220,2,2,0.1\n", "log.csv:3: the step is 1.02e+24; a step is a count up to 10^15"),
            ("log.csv", header + "0,NaN,,0.1\n1,nan,3,0.1\n", "log.csv: no training loss value in 2 rows"),
            ("log.csv", "", "log.csv: empty: no header row"),
            ("log.jsonl", "{\"_step\": 0, \"train/loss\": 1}\n[1, 2]\n", "log.jsonl:2: not a JSON object"),
            ("log.csv", "_step,\"train/loss,val/loss,lr\n", "log.csv:1: a quoted field without its closing quote"),
            ("log.csv", header + "0," + String(repeating: "1", count: 1 << 20) + ",1,1\n", "log.csv:2: a line longer than 1048576 bytes"),
        ]
        for c in cases {
            try writeText(c.text, to: scratch + "/" + c.name)
            let r = try TestSupport.arapack("convert", source, scratch + "/out", "--training-log", scratch + "/" + c.name)
            XCTAssertEqual(r.status, 2, "\(c.fragment): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(scratch + "/" + c.fragment), "\(c.fragment): \(r.stderr)")
            XCTAssertFalse(pathExists(scratch + "/out"))
        }
        // Absurd but finite losses are drawn, not a crash: the plots' coordinates stay within their bounds.
        try writeText(header + "0,6.2,-1e308,0.1\n10,1e308,1e308,0\n", to: scratch + "/extreme.csv")
        let extreme = try TestSupport.arapack("convert", source, scratch + "/extreme", "--training-log", scratch + "/extreme.csv")
        XCTAssertEqual(extreme.status, 0, extreme.stderr)
        XCTAssertTrue(pathExists(scratch + "/extreme/training_loss.svg"))
        let gguf = try TestSupport.arapack("convert", source, scratch + "/x.gguf", "--to", "gguf", "--training-log", scratch + "/log.csv")
        XCTAssertEqual(gguf.status, 64)
        XCTAssertTrue(gguf.stderr.contains("--training-log applies to bundles"), gguf.stderr)
    }
}
