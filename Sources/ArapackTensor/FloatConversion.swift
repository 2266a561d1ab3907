/// Bit-exact conversions between float32 and the 16- and 8-bit float formats.
///
/// All routines are branch-free integer/float code over buffers so the compiler can vectorise them.
/// Rounding is IEEE round-to-nearest-even. NaN stays NaN, encoded as PyTorch's vectorised CPU kernels
/// encode it (what `tensor.to(...)` gives): bfloat16 NaN is 0xFFFF, float16 NaN keeps its sign and the top
/// payload bits with the quiet bit set (the x86 F16C conversion). (PyTorch's scalar path, used only for
/// the last few elements of a tensor, writes 0x7FC0 / 0x7E00 instead.) Values too large for float16
/// become infinity, which callers that must refuse overflow detect with `countFloat16Overflows`.
public enum FloatConversion {
    // MARK: bfloat16

    /// float32 → bfloat16 bits, round-to-nearest-even; every NaN becomes 0xFFFF (as PyTorch writes it).
    @inline(__always)
    public static func bf16Bits(_ value: Float) -> UInt16 {
        let u = value.bitPattern
        let rounded = (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16
        let isNaN = (u & 0x7FFF_FFFF) > 0x7F80_0000
        return UInt16(truncatingIfNeeded: isNaN ? 0xFFFF : rounded)
    }

    /// bfloat16 bits → float32 (exact).
    @inline(__always)
    public static func float(bf16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    // MARK: float16

    /// float32 → IEEE float16 bits, round-to-nearest-even, subnormals kept, overflow to ±inf,
    /// NaN to a quiet NaN with the same sign and the top ten payload bits (as F16C's vcvtps2ph).
    @inline(__always)
    public static func f16Bits(_ value: Float) -> UInt16 {
        let scaleToInf = Float(bitPattern: 0x7780_0000)   // 2^112
        let scaleToZero = Float(bitPattern: 0x0880_0000)  // 2^-110
        var base = (abs(value) * scaleToInf) * scaleToZero
        let w = value.bitPattern
        let shl1 = w &+ w
        let sign = w & 0x8000_0000
        var bias = shl1 & 0xFF00_0000
        if bias < 0x7100_0000 { bias = 0x7100_0000 }
        base = Float(bitPattern: (bias >> 1) &+ 0x0780_0000) + base
        let bits = base.bitPattern
        let expBits = (bits >> 13) & 0x0000_7C00
        let mantissaBits = bits & 0x0000_0FFF
        let nonSign = expBits &+ mantissaBits
        let nan = 0x7E00 | ((w >> 13) & 0x03FF)
        return UInt16(truncatingIfNeeded: (sign >> 16) | (shl1 > 0xFF00_0000 ? nan : nonSign))
    }

    /// IEEE float16 bits → float32 (exact, subnormals included).
    @inline(__always)
    public static func float(f16Bits h: UInt16) -> Float {
        let w = UInt32(h) << 16
        let sign = w & 0x8000_0000
        let twoW = w &+ w
        let expOffset: UInt32 = 0xE0 << 23
        let expScale = Float(bitPattern: 0x0780_0000)  // 2^-112
        let normalized = Float(bitPattern: (twoW >> 4) &+ expOffset) * expScale
        let magicMask: UInt32 = 126 << 23
        let denormalized = Float(bitPattern: (twoW >> 17) | magicMask) - 0.5
        let cutoff: UInt32 = 1 << 27
        return Float(bitPattern: sign | (twoW < cutoff ? denormalized.bitPattern : normalized.bitPattern))
    }

    // MARK: float8

    /// float8 e5m2 bits → float32 (exact): e5m2 is the high byte of a float16.
    @inline(__always)
    public static func float(f8e5m2Bits b: UInt8) -> Float { float(f16Bits: UInt16(b) << 8) }

    /// float8 e4m3fn bits → float32 (exact). e4m3fn has no infinities; 0x7F and 0xFF are NaN.
    public static func float(f8e4m3Bits b: UInt8) -> Float {
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let e = Int((b >> 3) & 0x0F)
        let m = Float(b & 0x07)
        if e == 15 && b & 0x07 == 7 { return .nan }
        if e == 0 { return sign * m * Float(sign: .plus, exponent: -9, significand: 1) }
        return sign * (1 + m / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    // MARK: buffers

    /// Converts `source` to bfloat16 bits in `destination` (same count).
    public static func convertToBF16(_ source: UnsafeBufferPointer<Float>, _ destination: UnsafeMutableBufferPointer<UInt16>) {
        precondition(source.count == destination.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        for i in 0..<source.count { d[i] = bf16Bits(s[i]) }
    }

    /// Converts `source` to float16 bits in `destination` (same count).
    public static func convertToF16(_ source: UnsafeBufferPointer<Float>, _ destination: UnsafeMutableBufferPointer<UInt16>) {
        precondition(source.count == destination.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        for i in 0..<source.count { d[i] = f16Bits(s[i]) }
    }

    /// Widens bfloat16 bits to float32.
    public static func convertFromBF16(_ source: UnsafeBufferPointer<UInt16>, _ destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        for i in 0..<source.count { d[i] = float(bf16Bits: s[i]) }
    }

    /// Widens float16 bits to float32.
    public static func convertFromF16(_ source: UnsafeBufferPointer<UInt16>, _ destination: UnsafeMutableBufferPointer<Float>) {
        precondition(source.count == destination.count)
        guard let s = source.baseAddress, let d = destination.baseAddress else { return }
        for i in 0..<source.count { d[i] = float(f16Bits: s[i]) }
    }

    /// How many finite values of `source` become infinite in float16 (overflow).
    public static func countFloat16Overflows(_ source: UnsafeBufferPointer<Float>) -> Int {
        var n = 0
        for x in source where x.isFinite && abs(x) >= 65520 { n += 1 }
        return n
    }
}
