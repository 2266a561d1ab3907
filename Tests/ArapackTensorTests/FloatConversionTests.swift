@testable import ArapackTensor
import ArapackTestSupport
import XCTest

final class FloatConversionTests: XCTestCase {
    /// Every float16 bit pattern widens exactly (checked against the hardware Float16 type) and narrows back to itself.
    func testFloat16ExhaustiveRoundTrip() {
        for bits in 0...UInt16.max {
            let wide = FloatConversion.float(f16Bits: bits)
            let hardware = Float(Float16(bitPattern: bits))
            if hardware.isNaN {
                XCTAssertTrue(wide.isNaN, "bits \(bits)")
                XCTAssertEqual(FloatConversion.f16Bits(wide) & 0x7C00, 0x7C00)
                XCTAssertNotEqual(FloatConversion.f16Bits(wide) & 0x03FF, 0)
                continue
            }
            XCTAssertEqual(wide.bitPattern, hardware.bitPattern, "bits \(bits)")
            XCTAssertEqual(FloatConversion.f16Bits(wide), bits, "bits \(bits)")
        }
    }

    /// float32 → float16 agrees with the compiler's IEEE conversion on ties, subnormals, overflow and random values.
    func testFloat16NarrowingMatchesIEEE() {
        var values: [Float] = [0, -0, 1, 65504, 65519.99, 65520, 1e9, -1e9, .infinity, -.infinity,
                               5.96e-8, 2.98e-8, 2.9802322e-8, 2.9802326e-8, 1e-10, 6.1035156e-5, 1.00048828125, 1.00146484375]
        var rng = SplitMix64(seed: 7)
        for _ in 0..<200_000 { values.append(Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))) }
        for v in values where !v.isNaN {
            XCTAssertEqual(FloatConversion.f16Bits(v), Float16(v).bitPattern, "value \(v) bits \(v.bitPattern)")
        }
        XCTAssertEqual(FloatConversion.f16Bits(.nan) & 0x7E00, 0x7E00)
        XCTAssertEqual(FloatConversion.f16Bits(-Float.nan) & 0x8000, 0x8000)
    }

    /// bfloat16 rounding: ties go to even, carries propagate into the exponent, NaN stays NaN.
    func testBFloat16RoundToNearestEven() {
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x3F80_8000)), 0x3F80)  // tie, even below
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x3F81_8000)), 0x3F82)  // tie, odd → up
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x3F80_8001)), 0x3F81)  // above tie
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x3F80_7FFF)), 0x3F80)  // below tie
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x7F7F_FFFF)), 0x7F80)  // rounds to inf
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x0000_8000)), 0x0000)  // subnormal tie → even
        XCTAssertEqual(FloatConversion.bf16Bits(-.infinity), 0xFF80)
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0x7F80_0001)), 0xFFFF)  // signalling NaN: a NaN, not inf (PyTorch's 0xFFFF)
        XCTAssertEqual(FloatConversion.bf16Bits(Float(bitPattern: 0xFFC0_0000)), 0xFFFF)
        // Against a reference computed in Double: nearest representable, ties to even.
        var rng = SplitMix64(seed: 11)
        for _ in 0..<100_000 {
            let v = Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
            guard v.isFinite else { continue }
            let lower = Float(bitPattern: v.bitPattern & 0xFFFF_0000)
            let upper = Float(bitPattern: (v.bitPattern & 0xFFFF_0000) &+ 0x1_0000)
            // Past the largest bfloat16 the next step is 2^128 (it rounds to infinity).
            let upperValue = upper.isInfinite ? (v < 0 ? -0x1p128 : 0x1p128) : Double(upper)
            let dl = abs(Double(v) - Double(lower)), du = abs(upperValue - Double(v))
            let expected: Float = dl < du ? lower : (du < dl ? upper : ((lower.bitPattern >> 16) & 1 == 0 ? lower : upper))
            XCTAssertEqual(UInt32(FloatConversion.bf16Bits(v)) << 16, expected.bitPattern, "value \(v)")
        }
    }

    func testBufferConversionsRoundTrip() {
        let source: [Float] = [1, -2.5, 0.1, 65504, 3e-5]
        var bf = [UInt16](repeating: 0, count: source.count)
        var f16 = [UInt16](repeating: 0, count: source.count)
        var back = [Float](repeating: 0, count: source.count)
        source.withUnsafeBufferPointer { s in
            bf.withUnsafeMutableBufferPointer { FloatConversion.convertToBF16(s, $0) }
            f16.withUnsafeMutableBufferPointer { FloatConversion.convertToF16(s, $0) }
        }
        f16.withUnsafeBufferPointer { h in back.withUnsafeMutableBufferPointer { FloatConversion.convertFromF16(h, $0) } }
        XCTAssertEqual(back, source.map { Float(Float16($0)) })
        bf.withUnsafeBufferPointer { h in back.withUnsafeMutableBufferPointer { FloatConversion.convertFromBF16(h, $0) } }
        XCTAssertEqual(back[0], 1)
        XCTAssertEqual(back[1], -2.5)
        XCTAssertEqual(back[2].bitPattern, 0x3DCD_0000)
        XCTAssertEqual(source.withUnsafeBufferPointer { FloatConversion.countFloat16Overflows($0) }, 0)
        XCTAssertEqual([Float(65520), 1e6, .infinity, 1].withUnsafeBufferPointer { FloatConversion.countFloat16Overflows($0) }, 2)
    }

    func testFloat8Decoding() {
        XCTAssertEqual(FloatConversion.float(f8e4m3Bits: 0x7E), 448)
        XCTAssertEqual(FloatConversion.float(f8e4m3Bits: 0x01), Float(sign: .plus, exponent: -9, significand: 1))
        XCTAssertEqual(FloatConversion.float(f8e4m3Bits: 0xBE), -1.75)
        XCTAssertTrue(FloatConversion.float(f8e4m3Bits: 0x7F).isNaN)
        XCTAssertEqual(FloatConversion.float(f8e5m2Bits: 0x7B), 57344)
        XCTAssertEqual(FloatConversion.float(f8e5m2Bits: 0x7C), .infinity)
    }
}
