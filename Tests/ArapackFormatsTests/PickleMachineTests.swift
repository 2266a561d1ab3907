import ArapackTestSupport
@testable import ArapackFormats
import XCTest

final class PickleMachineTests: XCTestCase {
    /// The arenas of the values the tests look at (a value's containers are emptied with its arena).
    private var arenas: [PickleArena] = []

    private func load(_ bytes: [UInt8], allowed: Set<PickleGlobal>? = [], limits: PickleLimits = PickleLimits()) throws -> PickleValue {
        let result = try bytes.withUnsafeBytes { try PickleMachine.load($0, allowed: allowed, limits: limits) }
        arenas.append(result.arena)
        return result.value
    }

    func testProtocolFourValues() throws {
        // pickle.dumps({"a": [1, -2, 3.5, None, True, b"\x00", 2**70], "b": ("x",)}, protocol=4)
        let bytes: [UInt8] = [0x80, 0x04, 0x95, 0x3b, 0, 0, 0, 0, 0, 0, 0, 0x7d, 0x94, 0x28, 0x8c, 0x01, 0x61, 0x94, 0x5d, 0x94,
                              0x28, 0x4b, 0x01, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x47, 0x40, 0x0c, 0, 0, 0, 0, 0, 0, 0x4e, 0x88,
                              0x43, 0x01, 0x00, 0x94, 0x8a, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x65, 0x8c, 0x01, 0x62, 0x94,
                              0x8c, 0x01, 0x78, 0x94, 0x85, 0x94, 0x75, 0x2e]
        guard case let .dict(d) = try load(bytes) else { return XCTFail("not a dict") }
        let a = try XCTUnwrap(d["a"]?.sequence)
        XCTAssertEqual(a[0].intValue, 1)
        XCTAssertEqual(a[1].intValue, -2)
        guard case let .float(f) = a[2], case .none = a[3], case .bool(true) = a[4], case let .bytes(b) = a[5], case let .bigInt(big) = a[6] else { return XCTFail() }
        XCTAssertEqual(f, 3.5)
        XCTAssertEqual(b, [0])
        XCTAssertEqual(big, [0, 0, 0, 0, 0, 0, 0, 0, 0x40])
        XCTAssertEqual(d["b"]?.tupleValue?.first?.stringValue, "x")
    }

    func testGlobalsAreRefusedWhereverTheyComeFrom() {
        // GLOBAL 'os system'
        XCTAssertThrowsError(try load([0x80, 0x02] + Array("cos\nsystem\n.".utf8))) {
            XCTAssertEqual($0 as? PickleError, .refusedGlobal(global: "os.system", offset: 2))
        }
        // STACK_GLOBAL from memoized strings
        let stacked: [UInt8] = [0x80, 0x04, 0x8c, 0x02, 0x6f, 0x73, 0x94, 0x8c, 0x04, 0x70, 0x6f, 0x70, 0x65, 0x94, 0x30, 0x30,
                                0x68, 0x00, 0x68, 0x01, 0x93, 0x2e]
        XCTAssertThrowsError(try load(stacked)) { XCTAssertEqual($0 as? PickleError, .refusedGlobal(global: "os.pope", offset: 20)) }
        XCTAssertNoThrow(try load(stacked, allowed: nil), "scan mode keeps the global as an inert record")
    }

    func testLimitsAndMalformedInput() {
        var limits = PickleLimits()
        limits.memoEntries = 2
        // three MEMOIZEs
        XCTAssertThrowsError(try load([0x80, 0x04, 0x4e, 0x94, 0x94, 0x94, 0x2e], limits: limits)) {
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 5, what: "memo entries", limit: 2))
        }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x58, 0x10, 0x00, 0x00, 0x00, 0x61])) { XCTAssertEqual($0 as? PickleError, .truncated(offset: 7)) }
        // A string past the limit is refused by its declared length, before its bytes are looked at.
        XCTAssertThrowsError(try load([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0x7f])) {
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 2, what: "bytes in one string", limit: 16 << 20))
        }
        var small = PickleLimits()
        small.stringBytes = 2
        XCTAssertNoThrow(try load([0x80, 0x02, 0x43, 0x02, 0x61, 0x62, 0x2e], limits: small))
        XCTAssertThrowsError(try load([0x80, 0x02, 0x43, 0x03, 0x61, 0x62, 0x63, 0x2e], limits: small)) {
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 2, what: "bytes in one string", limit: 2))
        }
        var few = PickleLimits()
        few.containers = 3
        XCTAssertNoThrow(try load([0x80, 0x02, 0x28, 0x5d, 0x7d, 0x6c, 0x2e], limits: few), "three containers: [[], {}]")
        XCTAssertThrowsError(try load([0x80, 0x02, 0x28, 0x5d, 0x5d, 0x7d, 0x6c, 0x2e], limits: few)) {  // [[], [], {}]: four
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 6, what: "lists, dicts and objects", limit: 3))
        }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x68, 0x05, 0x2e])) { XCTAssertEqual($0 as? PickleError, .malformed(offset: 2, detail: "memo key 5 was never stored")) }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x2e])) { XCTAssertEqual($0 as? PickleError, .malformed(offset: 2, detail: "STOP with 0 values on the stack")) }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x4e, 0x61, 0x2e])) { XCTAssertEqual($0 as? PickleError, .malformed(offset: 3, detail: "APPEND to a non-list")) }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x58, 0x02, 0, 0, 0, 0xc3, 0x28, 0x2e])) { XCTAssertEqual($0 as? PickleError, .malformed(offset: 7, detail: "string is not valid UTF-8")) }
        XCTAssertThrowsError(try load([0x80, 0x06, 0x4e, 0x2e])) { XCTAssertEqual($0 as? PickleError, .malformed(offset: 0, detail: "protocol 6 is newer than 5")) }
        XCTAssertThrowsError(try load([0x80, 0x02, 0x8b, 0x00, 0x00, 0x01, 0x00, 0x2e])) {
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 2, what: "integer bytes", limit: PickleLimits().integerBytes))
        }
    }

    /// A memo reference shares, never copies: 64 doublings load instantly and in little memory.
    func testMemoBombIsShared() throws {
        var bytes: [UInt8] = [0x80, 0x02, 0x5d, 0x71, 0x00, 0x30]
        for i in 1...64 {
            bytes += [0x5d, 0x71, UInt8(i), 0x28, 0x68, UInt8(i - 1), 0x68, UInt8(i - 1), 0x65, 0x30]
        }
        bytes += [0x68, 64, 0x2e]
        guard case let .list(top) = try load(bytes) else { return XCTFail() }
        guard case let .list(a) = top.items[0], case let .list(b) = top.items[1] else { return XCTFail() }
        XCTAssertTrue(a === b)
    }

    /// A list appended to itself (a reference cycle) is freed once the result is dropped, whether the
    /// pickle completes or fails afterwards.
    func testSelfReferencingContainersAreFreed() throws {
        // PROTO 2, EMPTY_LIST, MEMOIZE(0), BINGET 0, APPEND, STOP  →  l = []; l.append(l)
        let complete: [UInt8] = [0x80, 0x02, 0x5D, 0x94, 0x68, 0x00, 0x61, 0x2E]
        weak var list: PickleList?
        try complete.withUnsafeBytes { bytes in
            let result = try PickleMachine.load(bytes, allowed: nil)
            guard case let .list(l) = result.value else { return XCTFail("not a list") }
            XCTAssertTrue(l.items.first.map { if case let .list(inner) = $0 { return inner === l } else { return false } } ?? false)
            list = l
        }
        XCTAssertNil(list, "the cycle was broken when the result went away")
        // The same cycle, then a malformed opcode: the error path frees it too.
        let failing: [UInt8] = [0x80, 0x02, 0x5D, 0x94, 0x68, 0x00, 0x61, 0x68, 0x07, 0x2E]
        XCTAssertThrowsError(try failing.withUnsafeBytes { try PickleMachine.load($0, allowed: nil) })
    }

    /// The fuzzer's finding (Fixtures/fuzz): refused with a message, and its containers freed.
    func testFuzzFindingsAreRefusedAndFreed() throws {
        // pickletools finds the LONG_BINGET of key 2624022 at byte 19822.
        let leak = TestSupport.fixture("fuzz/dcp/leak-774ea783")
        XCTAssertThrowsError(try DCPCheckpoint(directory: leak)) {
            XCTAssertEqual($0 as? DCPError, .metadata(directory: leak, detail: "\(PickleError.malformed(offset: 19822, detail: "memo key 2624022 was never stored"))"))
        }
        // deep-pickle/stack-3accf449: (opcode, 12-bit count) triples, expanded as the fuzz target does.
        let program = try Data(contentsOf: URL(fileURLWithPath: TestSupport.fixture("fuzz/deep-pickle/stack-3accf449")))
        XCTAssertEqual(Array(program), [0x28, 0x85, 0x0b, 0x74, 0x14, 0x14])
        let marksThenTuples: [UInt8] = [0x80, 0x02] + [UInt8](repeating: 0x28, count: 0x50b + 1) + [UInt8](repeating: 0x74, count: 0x414 + 1) + [0x2e]
        XCTAssertThrowsError(try load(marksThenTuples)) { error in
            XCTAssertEqual(error as? PickleError, .limitExceeded(offset: 2 + 1292 + 1000, what: "values nested in values (tuples, persistent ids)", limit: 1000))
        }
    }

    /// Values nested in values (tuples in tuples, persistent ids in persistent ids) are freed and walked by
    /// recursion: a 100,000-deep chain is refused at the limit instead of overflowing the stack; nesting up to
    /// the limit loads (and frees) normally, also when memoized and fetched again.
    func testDeepValueNestingIsRefusedAtTheLimit() throws {
        let n = 100_000
        let tuples: [UInt8] = [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: n) + [0x2e]
        XCTAssertThrowsError(try load(tuples)) { error in
            XCTAssertEqual(error as? PickleError, .limitExceeded(offset: 3 + PickleLimits().valueNesting, what: "values nested in values (tuples, persistent ids)", limit: 1000))
        }
        let persistent: [UInt8] = [0x80, 0x02, 0x4e] + [UInt8](repeating: 0x51, count: n) + [0x2e]
        XCTAssertThrowsError(try load(persistent)) {
            XCTAssertEqual($0 as? PickleError, .limitExceeded(offset: 3 + PickleLimits().valueNesting, what: "values nested in values (tuples, persistent ids)", limit: 1000))
        }
        // Through the memo: a 999-deep tuple stored, fetched and wrapped twice more goes past the limit.
        let deep: [UInt8] = [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: 999) + [0x71, 0x00, 0x30, 0x68, 0x00, 0x85, 0x85, 0x2e]
        XCTAssertThrowsError(try load(deep))
        var limits = PickleLimits()
        limits.valueNesting = 1002
        XCTAssertNoThrow(try load(deep, limits: limits))
        let within: [UInt8] = [0x80, 0x02, 0x29] + [UInt8](repeating: 0x85, count: 1000) + [0x2e]
        var depth = 0
        var v = try load(within)
        while case let .tuple(items) = v, let first = items.first { depth += 1; v = first }
        XCTAssertEqual(depth, 1000)
    }

    /// BINSTRING and SHORT_BINSTRING are Latin-1: each byte is the code point of the same value.
    func testBinstringIsLatin1() throws {
        let bytes: [UInt8] = [0x80, 0x02, 0x55, 0x04, 0x41, 0xE9, 0xFF, 0x00, 0x2e]
        XCTAssertEqual(try load(bytes).stringValue, "A\u{e9}\u{ff}\u{0}")
        let long: [UInt8] = [0x80, 0x02, 0x54] + withUnsafeBytes(of: Int32(300).littleEndian) { Array($0) } + (0..<300).map { UInt8($0 % 256) } + [0x2e]
        XCTAssertEqual(try load(long).stringValue?.unicodeScalars.map(\.value), (0..<300).map { UInt32($0 % 256) })
    }
}
