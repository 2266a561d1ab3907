import ArapackFormats
import ArapackTensor

/// Streams a tensor into a writer, cast to another floating dtype on the way, in bounded slices: memory
/// stays at a few slice buffers whatever the tensor size, and a mapped source's pages are dropped behind.
enum TensorCast {
    /// Elements per slice.
    static let sliceElements = 1 << 22
    static let floating: Set<DType> = [.f32, .f16, .bf16, .f64]

    /// Appends `t` as `dtype` to `out`. float16 overflow (a finite value that would become infinite) is
    /// refused naming the tensor; NaN stays NaN; rounding is to nearest even.
    static func write(_ t: Tensor, as dtype: DType, name: String, to out: AtomicFileWriter) throws {
        try write(t, as: dtype, name: name, file: out.destination) { try out.write($0) }
    }

    /// Passes `t` as `dtype` to `sink` slice by slice; `file` names the output in errors.
    static func write(_ t: Tensor, as dtype: DType, name: String, file: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        defer { t.storage.discardMappedPages() }
        guard dtype != t.dtype else {
            try t.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let end = min(offset + sliceElements * 4, raw.count)
                    try sink(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                    t.storage.discardMappedPages((t.byteOffset + offset)..<(t.byteOffset + end))
                    offset = end
                }
            }
            return
        }
        precondition(floating.contains(dtype) && floating.contains(t.dtype), "cast between floating dtypes only")
        let floats = UnsafeMutableBufferPointer<Float>.allocate(capacity: sliceElements)
        defer { floats.deallocate() }
        let bits = UnsafeMutableRawBufferPointer.allocate(byteCount: sliceElements * 4, alignment: 64)
        defer { bits.deallocate() }
        let count = t.elementCount
        var start = 0
        try t.withUnsafeBytes { raw in
            while start < count {
                let n = min(sliceElements, count - start)
                let slice = UnsafeRawBufferPointer(rebasing: raw[(start * t.dtype.byteSize)..<((start + n) * t.dtype.byteSize)])
                let f = UnsafeMutableBufferPointer(rebasing: floats[0..<n])
                widen(slice, dtype: t.dtype, into: f)
                switch dtype {
                case .f32:
                    try sink(UnsafeRawBufferPointer(f))
                case .bf16, .f16:
                    let h = bits.bindMemory(to: UInt16.self)
                    let dst = UnsafeMutableBufferPointer(rebasing: h[0..<n])
                    if dtype == .bf16 {
                        FloatConversion.convertToBF16(UnsafeBufferPointer(f), dst)
                    } else {
                        let overflows = FloatConversion.countFloat16Overflows(UnsafeBufferPointer(f))
                        guard overflows == 0 else {
                            throw ModelError(file, "tensor \"\(name)\": \(overflows) value(s) exceed the float16 range (|x| ≥ 65520) and would become infinite; keep it in bf16 or f32")
                        }
                        FloatConversion.convertToF16(UnsafeBufferPointer(f), dst)
                    }
                    try sink(UnsafeRawBufferPointer(dst))
                case .f64:
                    for x in f { try withUnsafeBytes(of: Double(x).bitPattern.littleEndian) { try sink($0) } }
                default:
                    preconditionFailure()
                }
                t.storage.discardMappedPages((t.byteOffset + start * t.dtype.byteSize)..<(t.byteOffset + (start + n) * t.dtype.byteSize))
                start += n
            }
        }
    }

    /// Any floating slice (possibly unaligned) widened to float32.
    static func widen(_ raw: UnsafeRawBufferPointer, dtype: DType, into f: UnsafeMutableBufferPointer<Float>) {
        switch dtype {
        case .f32:
            UnsafeMutableRawBufferPointer(f).copyMemory(from: raw)
        case .bf16, .f16:
            let tmp = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: f.count)
            defer { tmp.deallocate() }
            UnsafeMutableRawBufferPointer(tmp).copyMemory(from: raw)
            if dtype == .bf16 {
                FloatConversion.convertFromBF16(UnsafeBufferPointer(tmp), f)
            } else {
                FloatConversion.convertFromF16(UnsafeBufferPointer(tmp), f)
            }
        case .f64:
            for i in 0..<f.count { f[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))) }
        default:
            preconditionFailure()
        }
    }

    /// A tensor of `dtype` holding `t` cast (in memory; for small tensors and writers that need a `Tensor`).
    static func cast(_ t: Tensor, to dtype: DType, name: String) throws -> Tensor {
        guard dtype != t.dtype else { return t }
        let storage = TensorStorage(byteCount: Shape.byteCount(t.shape, dtype: dtype)!)
        var offset = 0
        try storage.withUnsafeMutableBytes { dst in
            try write(t, as: dtype, name: name, file: "memory") { bytes in
                UnsafeMutableRawBufferPointer(rebasing: dst[offset..<(offset + bytes.count)]).copyMemory(from: bytes)
                offset += bytes.count
            }
        }
        return try Tensor(dtype: dtype, shape: t.shape, storage: storage)
    }
}
