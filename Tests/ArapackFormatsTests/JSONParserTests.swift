@testable import ArapackFormats
import XCTest

final class JSONParserTests: XCTestCase {
    private func parse(_ text: String) throws -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    func testParsesValuesKeepingOrderAndExactIntegers() throws {
        let v = try parse(#" { "z": [1, -2, 3.5e2, true, false, null], "a": {"k": "v\u00e9\n\ud83d\ude00"}, "big": 9223372036854775807 } "#)
        XCTAssertEqual(v.members?.map(\.key), ["z", "a", "big"])
        XCTAssertEqual(v["z"]?.elements?.count, 6)
        XCTAssertEqual(v["z"]?.elements?[1].intValue, -2)
        XCTAssertNil(v["z"]?.elements?[2].intValue)
        XCTAssertEqual(v["z"]?.elements?[2].doubleValue, 350)
        XCTAssertEqual(v["a"]?["k"]?.stringValue, "vé\n😀")
        XCTAssertEqual(v["big"]?.intValue, Int.max)
        XCTAssertNil(try parse("9223372036854775808").intValue)
    }

    func testRejectsMalformedInputWithOffsets() {
        let cases: [(String, JSONError)] = [
            (#"{"a":1,"a":2}"#, JSONError(offset: 7, message: "duplicate key \"a\"", duplicateKey: "a")),
            ("[1,]", JSONError(offset: 3, message: "unexpected character")),
            ("01", JSONError(offset: 1, message: "unexpected trailing characters")),
            (#"{"a" 1}"#, JSONError(offset: 5, message: "expected ':'")),
            ("[1 2]", JSONError(offset: 3, message: "expected ',' or ']'")),
            (#""\x""#, JSONError(offset: 3, message: "invalid escape")),
            ("tru", JSONError(offset: 0, message: "invalid literal")),
            ("", JSONError(offset: 0, message: "unexpected end of input")),
            (#""\ud800""#, JSONError(offset: 7, message: "unpaired surrogate")),
            ("1.", JSONError(offset: 2, message: "invalid number")),
            ("-", JSONError(offset: 1, message: "invalid number")),
            ("\"a\u{01}\"", JSONError(offset: 2, message: "control character in string")),
            (String(repeating: "[", count: 200), JSONError(offset: 128, message: "nesting deeper than 128")),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try parse(text), text) { XCTAssertEqual($0 as? JSONError, expected, text) }
        }
        XCTAssertEqual("\(JSONError(offset: 3, message: "unexpected character"))", "unexpected character at byte 3", "the message, once")
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xC3, 0x28, 0x22])) { XCTAssertEqual($0 as? JSONError, JSONError(offset: 1, message: "invalid UTF-8")) }
        XCTAssertNoThrow(try JSONParser.parse(Array(#"{"a":1,"a":2}"#.utf8), rejectDuplicateKeys: false))
    }

    func testSerializationRoundTripsAndEscapes() throws {
        let v = JSONValue.object(["b": .string("q\"\\\u{01}\t"), "a": .array([.int(1), .null, .bool(true)]), "e": .object([])])
        XCTAssertEqual(v.serialized(), #"{"b":"q\"\\\u0001\t","a":[1,null,true],"e":{}}"#)
        XCTAssertEqual(try parse(v.serialized(pretty: true)), v)
        XCTAssertEqual(JSONValue.object(["k": .array([.int(1)])]).serialized(pretty: true), "{\n  \"k\": [\n    1\n  ]\n}")
    }
}
