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

    /// Inside `reusingFreedMappings`, a freed mapping serves a later buffer of its size or up to half of it, zeroed
    /// again; a much smaller one gets its own; nothing is kept once the run ends.
    func testFreedMappingsAreReusedZeroedWithinARun() {
        let size = ZeroedMemory.mappedFrom * 3
        ZeroedMemory.reusingFreedMappings {
            var first: ZeroedMemory? = ZeroedMemory(byteCount: size)
            let address = first!.bytes.baseAddress
            first!.bytes.initializeMemory(as: UInt8.self, repeating: 0xAB)
            first = nil
            XCTAssertEqual(ZeroedMemory.keptMappings, 1)
            let again = ZeroedMemory(byteCount: size / 2 + 1)
            XCTAssertEqual(again.bytes.baseAddress, address, "the freed mapping is reused")
            XCTAssertTrue(again.bytes.allSatisfy { $0 == 0 }, "and zeroed again")
            XCTAssertEqual(ZeroedMemory.keptMappings, 0)
            var big: ZeroedMemory? = ZeroedMemory(byteCount: size)
            big = nil
            XCTAssertEqual(ZeroedMemory.keptMappings, 1)
            // A buffer under half the kept one's size gets its own mapping, and the kept one is unmapped first if
            // keeping it would raise the most the buffers have held at once.
            let before = ZeroedMemory.accounting
            let small = ZeroedMemory(byteCount: ZeroedMemory.mappedFrom)
            let after = ZeroedMemory.accounting
            XCTAssertNotEqual(small.bytes.baseAddress, address, "a buffer under half the size is not served by it")
            let length = ZeroedMemory.mappedFrom + ZeroedMemory.hugePage
            XCTAssertEqual(after.highWater, max(before.highWater, before.inUse + length), "keeping never raises the high-water mark")
            XCTAssertLessThanOrEqual(after.inUse + after.kept, after.highWater)
            XCTAssertEqual(after.kept == 0, before.inUse + before.kept + length > before.highWater)
            withExtendedLifetime((again, big, small)) {}
        }
        XCTAssertEqual(ZeroedMemory.keptMappings, 0, "unmapped when the run ends")
        var outside: ZeroedMemory? = ZeroedMemory(byteCount: size)
        outside = nil
        XCTAssertEqual(ZeroedMemory.keptMappings, 0, "outside a run, freed mappings are unmapped")
        withExtendedLifetime(outside) {}
    }
}
