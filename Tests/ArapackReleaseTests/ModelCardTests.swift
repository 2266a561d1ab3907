@testable import ArapackRelease
import XCTest

/// The front matter check reads the card up to the closing --- and no further.
final class ModelCardTests: XCTestCase {
    func testFrontMatterProblems() {
        let ok = "---\nlicense: mit\ntags:\n- arafusion\n---\n\n# Body\n\nkey without colon\n---\n"
        XCTAssertNil(ModelCard.frontMatterProblem(ok), "lines after the block are the body's")
        XCTAssertNil(ModelCard.frontMatterProblem(ok.replacingOccurrences(of: "\n", with: "\r\n")), "CRLF lines")
        XCTAssertNil(ModelCard.frontMatterProblem("---\nlicense: mit\n---"), "closing line at the end without a newline")
        XCTAssertEqual(ModelCard.frontMatterProblem(""), "the card does not begin with a YAML front matter block (a first line ---)")
        XCTAssertEqual(ModelCard.frontMatterProblem("# Title\n---\nlicense: mit\n---\n"), "the card does not begin with a YAML front matter block (a first line ---)")
        XCTAssertEqual(ModelCard.frontMatterProblem("---"), "the front matter block has no closing --- line")
        XCTAssertEqual(ModelCard.frontMatterProblem("---\nlicense: mit\n"), "the front matter block has no closing --- line")
        XCTAssertEqual(ModelCard.frontMatterProblem("---\nlicense: mit\nbad line\n---\n"), "front matter line 3 is not a \"key: value\" entry: bad line")
        XCTAssertEqual(ModelCard.frontMatterProblem("---\ntags:\n- a\n---\n"), "the front matter states no license")
    }
}
