import COpenSSL
import CZstd
import XCTest

/// The two system libraries resolve through pkg-config, link, and compute: a fresh machine that lacks
/// one of them fails here with the missing library named.
final class SystemLibraryTests: XCTestCase {
    func testZstdRoundTrip() {
        XCTAssertGreaterThanOrEqual(ZSTD_versionNumber(), 10_400)
        let input = [UInt8](repeating: 42, count: 10_000)
        var compressed = [UInt8](repeating: 0, count: ZSTD_compressBound(input.count))
        let n = compressed.withUnsafeMutableBytes { c in input.withUnsafeBytes { ZSTD_compress(c.baseAddress, c.count, $0.baseAddress, $0.count, 19) } }
        XCTAssertEqual(ZSTD_isError(n), 0)
        XCTAssertLessThan(n, 100)
        var output = [UInt8](repeating: 0, count: input.count)
        let m = output.withUnsafeMutableBytes { o in compressed.withUnsafeBytes { ZSTD_decompress(o.baseAddress, o.count, $0.baseAddress, n) } }
        XCTAssertEqual(m, input.count)
        XCTAssertEqual(output, input)
    }

    func testOpenSSLVersion() {
        XCTAssertGreaterThanOrEqual(OpenSSL_version_num(), 0x3000_0000)
    }
}
