import Dispatch
#if canImport(Glibc)
import Glibc
#endif

#if !_endian(little)
#error("arapack reads and writes little-endian tensor data by copying bytes: little-endian hosts only")
#endif

/// Element access that copies out of the (possibly unaligned, possibly mapped) bytes.
extension Tensor {
    /// The elements of an integer or bool tensor as `T`, read little-endian with unaligned loads.
    /// Throws if the dtype is floating point or its width does not match `T`.
    public func integers<T: FixedWidthInteger>(as _: T.Type) throws -> [T] {
        guard dtype.byteSize == MemoryLayout<T>.size, !dtype.isFloatingPoint else {
            throw TensorError.wrongDType(
                expected: DType.allCases.filter { !$0.isFloatingPoint && $0.byteSize == MemoryLayout<T>.size }, found: dtype)
        }
        return rawElements(as: T.self)
    }

    /// The elements of an f64 tensor, exactly.
    public func doubles() throws -> [Double] {
        guard dtype == .f64 else { throw TensorError.wrongDType(expected: [.f64], found: dtype) }
        return rawElements(as: UInt64.self).map { Double(bitPattern: $0) }
    }

    /// The elements of a floating-point tensor as float32 (f64 is rounded; narrower types are exact).
    public func floats() throws -> [Float] {
        var out = [Float](repeating: 0, count: elementCount)
        try out.withUnsafeMutableBufferPointer { try copyFloats(into: $0) }
        return out
    }

    /// Writes the elements of a floating-point tensor as float32 into `destination` (same count).
    public func copyFloats(into destination: UnsafeMutableBufferPointer<Float>) throws {
        precondition(destination.count == elementCount)
        switch dtype {
        case .f32:
            withUnsafeBytes { UnsafeMutableRawBufferPointer(destination).copyMemory(from: $0) }
        case .bf16, .f16:
            let convert = dtype == .bf16 ? FloatConversion.convertFromBF16 : FloatConversion.convertFromF16
            withHalfWords { source in
                // Large tensors (a full-size model's weights) are widened on every core: the work is the
                // destination's fresh pages as much as the shifts.
                let chunks = source.count >= 1 << 20 ? Cores.online : 1
                let step = (source.count + chunks - 1) / chunks
                // Each chunk reads and writes its own range of the two buffers, which outlive the call.
                nonisolated(unsafe) let (from, to) = (source, destination)
                DispatchQueue.concurrentPerform(iterations: chunks) { c in
                    let range = (c * step)..<min(from.count, (c + 1) * step)
                    if !range.isEmpty {
                        convert(UnsafeBufferPointer(rebasing: from[range]), UnsafeMutableBufferPointer(rebasing: to[range]))
                    }
                }
            }
        case .f64:
            for (i, bits) in rawElements(as: UInt64.self).enumerated() { destination[i] = Float(Double(bitPattern: bits)) }
        case .f8e4m3:
            withUnsafeBytes { raw in for i in raw.indices { destination[i] = FloatConversion.float(f8e4m3Bits: raw[i]) } }
        case .f8e5m2:
            withUnsafeBytes { raw in for i in raw.indices { destination[i] = FloatConversion.float(f8e5m2Bits: raw[i]) } }
        default:
            throw TensorError.wrongDType(expected: DType.allCases.filter(\.isFloatingPoint), found: dtype)
        }
    }

    /// The elements as 16-bit words: the bytes themselves when aligned (a mapping or an owned buffer), else a copy.
    private func withHalfWords<R>(_ body: (UnsafeBufferPointer<UInt16>) -> R) -> R {
        withUnsafeBytes { raw in
            if Int(bitPattern: raw.baseAddress) % MemoryLayout<UInt16>.alignment == 0 {
                return body(raw.bindMemory(to: UInt16.self))
            }
            return rawElements(as: UInt16.self).withUnsafeBufferPointer(body)
        }
    }

    /// Copies the elements out as `T` regardless of the bytes' alignment.
    private func rawElements<T: FixedWidthInteger>(as _: T.Type) -> [T] {
        withUnsafeBytes { raw in
            [T](unsafeUninitializedCapacity: raw.count / MemoryLayout<T>.size) { buffer, count in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: raw)
                count = raw.count / MemoryLayout<T>.size
            }
        }
    }
}
