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
        let cases: [(String, String)] = [
            (#"{"a":1,"a":2}"#, "duplicate key \"a\""), ("[1,]", "unexpected character"), ("01", "trailing"),
            (#"{"a" 1}"#, "expected ':'"), ("[1 2]", "expected ','"), (#""\x""#, "invalid escape"),
            ("tru", "invalid literal"), ("", "unexpected end"), (#""\ud800""#, "unpaired surrogate"),
            ("1.", "invalid number"), ("-", "invalid number"), ("\"a\u{01}\"", "control character"),
            (String(repeating: "[", count: 200), "nesting deeper"),
        ]
        for (text, fragment) in cases {
            XCTAssertThrowsError(try parse(text), text) { error in
                XCTAssertTrue("\(error)".contains(fragment), "\(text): \(error)")
            }
        }
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xC3, 0x28, 0x22])) { XCTAssertTrue("\($0)".contains("invalid UTF-8 at byte 1")) }
        XCTAssertNoThrow(try JSONParser.parse(Array(#"{"a":1,"a":2}"#.utf8), rejectDuplicateKeys: false))
    }

    func testSerializationRoundTripsAndEscapes() throws {
        let v = JSONValue.object(["b": .string("q\"\\\u{01}\t"), "a": .array([.int(1), .null, .bool(true)]), "e": .object([])])
        XCTAssertEqual(v.serialized(), #"{"b":"q\"\\\u0001\t","a":[1,null,true],"e":{}}"#)
        XCTAssertEqual(try parse(v.serialized(pretty: true)), v)
        XCTAssertEqual(JSONValue.object(["k": .array([.int(1)])]).serialized(pretty: true), "{\n  \"k\": [\n    1\n  ]\n}")
    }
}
