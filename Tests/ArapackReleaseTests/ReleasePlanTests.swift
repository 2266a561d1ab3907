@testable import ArapackRelease
import ArapackTestSupport
import XCTest

/// The plan reader: what it reads, what it prints back, and that the printed plan reads back to itself (the fuzz
/// target's invariant; a string with DEL once printed raw, which TOML does not allow, and a backspace printed as JSON's
/// \b, which the reader did not take: Fixtures/fuzz/seeds/plan).
final class ReleasePlanTests: XCTestCase {
    func testValuesReadAsWrittenAndPrintBackToThemselves() throws {
        let text = """
            # a comment
            source = "a \\"quoted\\" path\\\\x # not a comment"   # a comment
            tokens = 12_000
            max_mean_kl = 1.5e-3
            parity = true
            keep = ["model.a.*", "b"]
            [[artifact]]
            dtype = "x\\u007Fy\\u0085\\u2028\\U0001F600\\t\\u0008\\b\\f"
            """
        let plan = try ReleasePlan.parse(text, origin: "p.toml")
        XCTAssertEqual(plan.settings.map(\.key), ["source", "tokens", "max_mean_kl", "parity", "keep"])
        XCTAssertEqual(plan.value("source"), .string("a \"quoted\" path\\x # not a comment"))
        XCTAssertEqual(plan.value("tokens"), .integer(12000))
        XCTAssertEqual(plan.value("max_mean_kl"), .float("1.5e-3"))
        XCTAssertEqual(plan.value("parity"), .boolean(true))
        XCTAssertEqual(plan.value("keep"), .strings(["model.a.*", "b"]))
        XCTAssertEqual(plan.artifacts.first?.value("dtype"), .string("x\u{7F}y\u{85}\u{2028}\u{1F600}\t\u{8}\u{8}\u{C}"))
        XCTAssertEqual(plan.artifacts.first?.line, 7)
        let printed = plan.toml
        XCTAssertTrue(printed.contains("\\u007F"), printed)
        let again = try ReleasePlan.parse(printed, origin: "p.toml")
        XCTAssertEqual(again.settings.map(\.value), plan.settings.map(\.value))
        XCTAssertEqual(again.artifacts.map { $0.settings.map(\.value) }, plan.artifacts.map { $0.settings.map(\.value) })
        XCTAssertEqual(again.toml, printed)
    }

    /// Read by scalars: a combining mark right after a quote or a bracket stays in the value (as characters, the quote
    /// and the mark are one grapheme, and the string was not seen; the fuzz target's third finding).
    func testCombiningMarksAfterQuotesAndBrackets() throws {
        let plan = try ReleasePlan.parse("a = \"\u{0CCC}x\"\nb = [\"\u{0301}\", \"y\"]\n", origin: "p.toml")
        XCTAssertEqual(plan.value("a"), .string("\u{0CCC}x"))
        XCTAssertEqual(plan.value("b"), .strings(["\u{0301}", "y"]))
        XCTAssertEqual(try ReleasePlan.parse(plan.toml, origin: "p.toml").toml, plan.toml)
    }

    func testEachMistakeNamesItsLine() {
        for (text, message) in [
            ("a = \"x\u{7F}\"", "p.toml:1: a control character inside a string"),
            ("a = \"\\q\"", "p.toml:1: \\q is not an escape a string takes"),
            ("a = \"\\uD800\"", "p.toml:1: \\uD800 is not a Unicode scalar"),
            ("a = \"\\u+ccc\"", "p.toml:1: \\u+ccc is not a Unicode scalar"),
            ("\n\nb = [\"x\" \"y\"]", "p.toml:3: expected , or ] in the array, found \"y\"]"),
            ("a = 1\na = 2", "p.toml:2: a is set twice"),
            ("a.b = 1", "p.toml:1: \"a.b\" is not a plan key (letters, digits and _)"),
            ("a = inf", "p.toml:1: inf is not a value a plan takes (a \"string\", a number, true, false or [\"strings\"])"),
            ("a =", "p.toml:1: a key without a value"),
        ] {
            XCTAssertThrowsError(try ReleasePlan.parse(text, origin: "p.toml"), text) { XCTAssertEqual("\($0)", message, text) }
        }
    }

    /// The overall bar of a release's progress line, cell by half cell.
    func testOverallBar() {
        let blank = { (n: Int) in String(repeating: " ", count: n) }
        XCTAssertEqual(Progress.bar(0, of: 4, within: 0), "▕" + blank(20) + "▏ 0%")
        XCTAssertEqual(Progress.bar(0, of: 4, within: 0.5), "▕██▌" + blank(17) + "▏ 12%")
        XCTAssertEqual(Progress.bar(1, of: 3, within: 0), "▕██████▌" + blank(13) + "▏ 33%")
        XCTAssertEqual(Progress.bar(3, of: 4, within: 2), "▕" + String(repeating: "█", count: 20) + "▏ 100%", "a step's share is at most whole")
    }
}
