/// Counts values that are not finite in raw little-endian element bytes.
public enum NonFinite {
    /// The number of NaN and ±inf elements of `dtype` in `raw` (0 for integer dtypes). Unaligned-safe.
    public static func count(_ raw: UnsafeRawBufferPointer, dtype: DType) -> Int {
        switch dtype {
        case .f32: return countExponentAllOnes(raw, as: UInt32.self, mask: 0x7F80_0000)
        case .f64: return countExponentAllOnes(raw, as: UInt64.self, mask: 0x7FF0_0000_0000_0000)
        case .bf16: return countExponentAllOnes(raw, as: UInt16.self, mask: 0x7F80)
        case .f16: return countExponentAllOnes(raw, as: UInt16.self, mask: 0x7C00)
        case .f8e5m2: return raw.reduce(0) { $0 + ($1 & 0x7C == 0x7C ? 1 : 0) }
        case .f8e4m3: return raw.reduce(0) { $0 + ($1 & 0x7F == 0x7F ? 1 : 0) }
        default: return 0
        }
    }

    private static func countExponentAllOnes<T: FixedWidthInteger & UnsignedInteger>(
        _ raw: UnsafeRawBufferPointer, as _: T.Type, mask: T
    ) -> Int {
        let n = raw.count / MemoryLayout<T>.size
        var count = 0
        for i in 0..<n {
            let v = raw.loadUnaligned(fromByteOffset: i &* MemoryLayout<T>.size, as: T.self)
            count &+= (v & mask) == mask ? 1 : 0
        }
        return count
    }
}

extension Tensor {
    /// The number of NaN and ±inf elements (0 for integer dtypes).
    public func nonFiniteCount() -> Int {
        withUnsafeBytes { NonFinite.count($0, dtype: dtype) }
    }
}
