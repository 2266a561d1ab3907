@testable import ArapackTensor
import XCTest

final class ZeroedMemoryTests: XCTestCase {
    func testSmallAndLargeBuffersAreZeroedAlignedAndWritable() {
        // Below and above the size from which a buffer is its own huge-page mapping, and an empty one.
        for count in [0, 1, 4095, ZeroedMemory.mappedFrom - 1, ZeroedMemory.mappedFrom, ZeroedMemory.mappedFrom + 12_345] {
            let memory = ZeroedMemory(byteCount: count)
            XCTAssertEqual(memory.bytes.count, count)
            XCTAssertNotNil(memory.bytes.baseAddress)
            XCTAssertEqual(Int(bitPattern: memory.bytes.baseAddress) % 64, 0, "\(count) bytes")
            if count >= ZeroedMemory.mappedFrom {
                XCTAssertEqual(Int(bitPattern: memory.bytes.baseAddress) % ZeroedMemory.hugePage, 0, "a mapped buffer starts on a huge page")
            }
            XCTAssertTrue(memory.bytes.allSatisfy { $0 == 0 }, "\(count) bytes")
            // Every byte, the last included, is writable.
            for i in stride(from: 0, to: count, by: 4096) { memory.bytes[i] = 7 }
            if count > 0 { memory.bytes[count - 1] = 9 }
            XCTAssertEqual(count > 0 ? memory.bytes[count - 1] : 9, 9)
        }
        let memory = ZeroedMemory(byteCount: 40)
        withExtendedLifetime(memory) { XCTAssertEqual(Array(memory.bound(to: Float.self, count: 10)), Array(repeating: 0, count: 10)) }
    }

    func testOwnedTensorStorageIsZeroedMemory() {
        let storage = TensorStorage(byteCount: ZeroedMemory.mappedFrom + 3)
        XCTAssertFalse(storage.isMapped)
        XCTAssertEqual(storage.count, ZeroedMemory.mappedFrom + 3)
        storage.withUnsafeMutableBytes { $0[$0.count - 1] = 1 }
        storage.withUnsafeBytes { XCTAssertEqual($0.reduce(0) { $0 + Int($1) }, 1) }
    }
}
