@testable import ArapackFormats
import ArapackTestSupport
import XCTest

final class ZipArchiveTests: XCTestCase {
    func testCRC32() {
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32.checksum($0) }, 0xCBF4_3926)
        XCTAssertEqual([UInt8]().withUnsafeBytes { CRC32.checksum($0) }, 0)
        var c = CRC32()
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        data[0..<333].withUnsafeBytes { c.update($0) }
        data[333...].withUnsafeBytes { c.update($0) }
        XCTAssertEqual(c.value, data.withUnsafeBytes { CRC32.checksum($0) })
    }

    func testTorchArchivesAlignedZip64AndDeflated() throws {
        let plain = try ZipArchive(path: TestSupport.fixture("torch/valid/bare_state_dict.pt"))
        for e in plain.entries where e.name.contains("/data/") { XCTAssertEqual(e.dataOffset % 64, 0, "torch aligns storages to 64 bytes") }
        for e in plain.entries { XCTAssertNoThrow(try plain.verifyChecksum(of: e.name), e.name) }
        let zip64 = try ZipArchive(path: TestSupport.fixture("torch/valid/zip64_records.pt"))
        let deflated = try ZipArchive(path: TestSupport.fixture("torch/valid/deflated.pt"))
        XCTAssertTrue(deflated.entries.contains { $0.method == 8 })
        for e in plain.entries {
            let name = "archive/" + e.name.split(separator: "/", maxSplits: 1)[1]
            let expected = try plain.bytes(of: e.name)
            if e.name.contains("/data/") {
                XCTAssertEqual(try zip64.bytes(of: zip64.entries.first { $0.name.hasSuffix(name.dropFirst(7)) }!.name), expected)
                XCTAssertEqual(try deflated.bytes(of: deflated.entries.first { $0.name.hasSuffix(name.dropFirst(7)) }!.name), expected)
            }
        }
    }
}
