@testable import ArapackTensor
import XCTest

final class TensorTests: XCTestCase {
    func testShapeArithmeticReportsOverflow() {
        XCTAssertEqual(Shape.elementCount([]), 1)
        XCTAssertEqual(Shape.elementCount([0, 5]), 0)
        XCTAssertEqual(Shape.elementCount([3, 4, 5]), 60)
        XCTAssertNil(Shape.elementCount([-1]))
        XCTAssertNil(Shape.elementCount([1 << 62, 4]))
        XCTAssertEqual(Shape.byteCount([1 << 60], dtype: .u8), 1 << 60)
        XCTAssertNil(Shape.byteCount([1 << 61], dtype: .f32))
    }

    func testTensorRejectsShortStorageAndOverflow() {
        let storage = TensorStorage(byteCount: 16)
        XCTAssertNoThrow(try Tensor(dtype: .f32, shape: [4], storage: storage))
        XCTAssertNoThrow(try Tensor(dtype: .f32, shape: [2], storage: storage, byteOffset: 8))
        XCTAssertThrowsError(try Tensor(dtype: .f32, shape: [5], storage: storage))
        XCTAssertThrowsError(try Tensor(dtype: .f32, shape: [2], storage: storage, byteOffset: 12))
        XCTAssertThrowsError(try Tensor(dtype: .f32, shape: [Int.max, 2], storage: storage)) { error in
            XCTAssertEqual(error as? TensorError, .shapeOverflow(shape: [Int.max, 2], dtype: .f32))
        }
        XCTAssertThrowsError(try Tensor(dtype: .u8, shape: [3], bytes: [1, 2]))
    }

    func testAliasingAndValues() throws {
        let a = try Tensor(float32: [1, 2, 3, 4], shape: [2, 2])
        let b = try Tensor(dtype: .f32, shape: [2, 2], storage: a.storage)
        let c = try Tensor(float32: [1, 2, 3, 4], shape: [2, 2])
        XCTAssertTrue(a.sharesStorage(with: b))
        XCTAssertFalse(a.sharesStorage(with: c))
        XCTAssertTrue(a.isBitIdentical(to: c))
        XCTAssertFalse(a.isBitIdentical(to: try Tensor(float32: [1, 2, 3, 4], shape: [4])))
        XCTAssertEqual(try a.floats(), [1, 2, 3, 4])
        XCTAssertThrowsError(try a.integers(as: Int32.self))
        let ints = try Tensor(dtype: .i16, shape: [2], bytes: [0x01, 0x80, 0xFF, 0x7F])
        XCTAssertEqual(try ints.integers(as: Int16.self), [Int16(bitPattern: 0x8001), 0x7FFF])
    }

    func testNonFiniteCount() throws {
        let t = try Tensor(float32: [1, .nan, .infinity, -.infinity, 0, Float.greatestFiniteMagnitude], shape: [6])
        XCTAssertEqual(t.nonFiniteCount(), 3)
        let h = try Tensor(dtype: .f16, shape: [3], bytes: [0x00, 0x7C, 0xFF, 0x7B, 0x01, 0xFE])
        XCTAssertEqual(h.nonFiniteCount(), 2)
        let b = try Tensor(dtype: .bf16, shape: [2], bytes: [0x80, 0x7F, 0x7F, 0x7F])
        XCTAssertEqual(b.nonFiniteCount(), 1)
        let i = try Tensor(dtype: .i32, shape: [1], bytes: [0x00, 0x00, 0x80, 0x7F])
        XCTAssertEqual(i.nonFiniteCount(), 0)
    }

    /// bf16 and f16 widen to float32 element by element, aligned (read in place, split across cores when
    /// large) or not (copied first): every element equals the bit formula (bf16 is the top half of a float32).
    func testHalfPrecisionWidensAlignedAndUnaligned() throws {
        let count = (1 << 20) + 3
        var words = [UInt16](repeating: 0, count: count)
        var state: UInt32 = 12345
        for i in 0..<count { state = state &* 1664525 &+ 1013904223; words[i] = UInt16(truncatingIfNeeded: state >> 16) }
        let bytes = words.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let storage = TensorStorage(copying: [0] + bytes)
        for offset in [1, 0] {
            let t = offset == 1 ? try Tensor(dtype: .bf16, shape: [count], storage: storage, byteOffset: 1)
                                : try Tensor(dtype: .bf16, shape: [count], bytes: bytes)
            let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            defer { out.deallocate() }
            try t.copyFloats(into: out)
            var mismatches = 0
            for i in 0..<count where out[i].bitPattern != UInt32(words[i]) << 16 { mismatches += 1 }
            XCTAssertEqual(mismatches, 0, "byte offset \(offset)")
        }
        let f16 = try Tensor(dtype: .f16, shape: [count], bytes: bytes)
        let out = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { out.deallocate() }
        try f16.copyFloats(into: out)
        // Float16 is the platform's own conversion here, independent of FloatConversion's.
        var mismatches = 0
        for i in 0..<count {
            let expected = Float(Float16(bitPattern: words[i]))
            if !(out[i] == expected || (out[i].isNaN && expected.isNaN)) { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }
}
