import ArapackFormats
import XCTest

/// `Codable` over `JSONValue`: members in declaration order, absent optionals left out, `JSONValue` passed
/// through, and decoding errors that name the field and what was expected.
final class JSONValueCodingTests: XCTestCase {
    struct Entry: Codable, Equatable {
        var path: String
        var size: Int
    }

    struct Record: Codable, Equatable {
        var zeta: Int
        var alpha: String
        var ratio: Double
        var flag: Bool
        var groups: [[String]]
        var entries: [Entry]
        var free: JSONValue
        var note: String?
        var small: UInt8
    }

    let record = Record(zeta: 3, alpha: "a\"b", ratio: 0.5, flag: true, groups: [["x", "y"]], entries: [.init(path: "p", size: 7)],
                        free: .object([.init("k", .array([.int(1), .null]))]), note: nil, small: 200)

    func testEncodesInDeclarationOrderAsThePackageWritesJSON() throws {
        let json = try JSONValueEncoder().encode(record)
        XCTAssertEqual(json.serialized(), #"{"zeta":3,"alpha":"a\"b","ratio":0.5,"flag":true,"groups":[["x","y"]],"entries":[{"path":"p","size":7}],"free":{"k":[1,null]},"small":200}"#)
        XCTAssertEqual(try JSONValueDecoder().decode(Record.self, from: json), record)
        var noted = record
        noted.note = "n"
        XCTAssertEqual(try JSONValueEncoder().encode(noted)["note"], .string("n"))
    }

    func testDecodingErrorsNameTheFieldAndTheExpectation() throws {
        func error(_ text: String) -> [String]? {
            do {
                _ = try JSONValueDecoder().decode(Record.self, from: try JSONParser.parse(Array(text.utf8)))
                return nil
            } catch let e as JSONDecodingError { return [e.path, e.expected] } catch { return ["not a JSONDecodingError: \(error)"] }
        }
        let good = try JSONValueEncoder().encode(record).serialized()
        XCTAssertNil(error(good))
        XCTAssertEqual(error(good.replacingOccurrences(of: #""size":7"#, with: #""size":"7""#)), ["entries[0].size", "an integer"])
        XCTAssertEqual(error(good.replacingOccurrences(of: #""size":7"#, with: #""size":7.5"#)), ["entries[0].size", "an integer"])
        XCTAssertEqual(error(good.replacingOccurrences(of: #","size":7"#, with: "")), ["entries[0].size", "a value (the field is missing)"])
        XCTAssertEqual(error(good.replacingOccurrences(of: #""small":200"#, with: #""small":300"#)), ["small", "an integer that fits UInt8"])
        XCTAssertEqual(error(good.replacingOccurrences(of: #"[["x","y"]]"#, with: #"[["x",1]]"#)), ["groups[0][1]", "a string"])
        XCTAssertEqual(error(good.replacingOccurrences(of: #""flag":true"#, with: #""flag":1"#)), ["flag", "true or false"])
        XCTAssertEqual(error("[]"), ["", "an object"])
        // The message, once per form of path.
        XCTAssertEqual("\(try XCTUnwrap(catching { try JSONValueDecoder().decode(Record.self, from: .array([])) }))", "the document: expected an object")
        XCTAssertNil(error(good.replacingOccurrences(of: #""note""#, with: #""x""#)), "an absent optional is nil")
    }
}

/// The error `body` throws, or nil.
private func catching(_ body: () throws -> Any) -> Error? {
    do { _ = try body(); return nil } catch { return error }
}
