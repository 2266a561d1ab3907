import ArapackFormats
import ArapackModel
import ArapackTensor
import CKernels
import Dispatch

/// Streams tensors into a writer, cast to another floating dtype on the way, in bounded slices: memory
/// stays at the caster's slice buffers (allocated once) whatever the tensor size, and a mapped source's
/// pages are dropped behind each slice.
final class TensorCaster {
    /// Elements per slice.
    static let sliceElements = 1 << 22
    static let floating: Set<DType> = [.f32, .f16, .bf16, .f64]

    private let floats = UnsafeMutableBufferPointer<Float>.allocate(capacity: TensorCaster.sliceElements)
    private let halves = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: TensorCaster.sliceElements)
    /// When set, every narrowing cast adds its elements' error here (for the per-tensor report).
    var error: QuantizationRecord.Accumulator?
    /// Only for the rare widening to float64.
    private var doubles: UnsafeMutableBufferPointer<Double>?
    /// Only for streamed transposes (GPT-2's Conv1D weights): `sliceElements` elements of up to 8 bytes.
    private var transposeBuffer: UnsafeMutableRawBufferPointer?

    init() {}

    deinit {
        floats.deallocate()
        halves.deallocate()
        doubles?.deallocate()
        transposeBuffer?.deallocate()
    }

    /// Appends `t` as `dtype` to `out`. float16 overflow (a finite value that would become infinite) is
    /// refused naming the tensor; NaN stays NaN; rounding is to nearest even.
    func write(_ t: Tensor, as dtype: DType, name: String, to out: AtomicFileWriter) throws {
        try write(t, as: dtype, name: name, file: out.destination) { try out.write($0) }
    }

    /// Passes `t` as `dtype` to `sink` slice by slice; `file` names the output in errors.
    func write(_ t: Tensor, as dtype: DType, name: String, file: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        defer { t.storage.discardMappedPages() }
        precondition(dtype == t.dtype || Self.floating.contains(dtype) && Self.floating.contains(t.dtype), "cast between floating dtypes only")
        let size = t.dtype.byteSize, count = t.elementCount
        // Same dtype: byte slices pass straight through.
        let step = dtype == t.dtype ? Self.sliceElements * 4 / size : Self.sliceElements
        try t.withUnsafeBytes { raw in
            var start = 0
            while start < count {
                let n = min(step, count - start)
                let slice = UnsafeRawBufferPointer(rebasing: raw[(start * size)..<((start + n) * size)])
                if dtype == t.dtype {
                    try sink(slice)
                } else {
                    try sink(convert(slice, from: t.dtype, to: dtype, count: n, name: name, file: file))
                }
                t.storage.discardMappedPages((t.byteOffset + start * size)..<(t.byteOffset + (start + n) * size))
                start += n
            }
        }
    }

    /// Passes the transpose of the 2-D tensor `t` (`[rows, cols]` → `[cols, rows]`) as `dtype` to `sink` in chunks of
    /// up to `sliceElements` (large writes hash and write on two cores), each filled strip by strip of about
    /// `stripBytes` so the transpose runs in cache. Memory stays at the caster's buffers whatever the tensor size;
    /// the mapped source's pages are dropped at the end.
    func writeTransposed(_ t: Tensor, as dtype: DType, name: String, file: String, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        precondition(t.shape.count == 2, "transpose of a 2-D tensor only")
        defer { t.storage.discardMappedPages() }
        let rows = t.shape[0], cols = t.shape[1], size = t.dtype.byteSize
        guard rows > 0, cols > 0 else { return }
        guard rows <= Self.sliceElements else { return try write(try t.transposed(), as: dtype, name: name, file: file, sink: sink) }
        if transposeBuffer == nil { transposeBuffer = .allocate(byteCount: Self.sliceElements * 8, alignment: 4096) }
        let buffer = transposeBuffer!
        let perChunk = Self.sliceElements / rows
        let width = min(perChunk, max(16, Self.stripBytes / (rows * size) / 16 * 16))
        try t.withUnsafeBytes { raw in
            var c = 0
            while c < cols {
                let chunk = min(perChunk, cols - c)
                var k = 0
                while k < chunk {
                    let n = min(width, chunk - k)
                    arapack_transpose(raw.baseAddress! + (c + k) * size, cols, buffer.baseAddress! + k * rows * size, rows, rows, n, size)
                    k += n
                }
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<(chunk * rows * size)])
                try sink(dtype == t.dtype ? bytes : try convert(bytes, from: t.dtype, to: dtype, count: chunk * rows, name: name, file: file))
                c += chunk
            }
        }
    }

    /// Bytes of one strip of a streamed transpose (fits the L2 cache).
    static let stripBytes = 1 << 20

    /// Passes `t` (any floating dtype) to `body` as float32 blocks of whole rows of `rowLength` elements:
    /// in place when it already is an aligned float32 array, widened into the caster's buffer otherwise.
    func floatRows(_ t: Tensor, rowLength: Int, _ body: (Range<Int>, UnsafeBufferPointer<Float>) throws -> Void) throws {
        defer { t.storage.discardMappedPages() }
        let size = t.dtype.byteSize, rows = t.elementCount / max(rowLength, 1)
        let perBlock = max(1, Self.sliceElements / max(rowLength, 1))
        let spare = rowLength > Self.sliceElements ? UnsafeMutableBufferPointer<Float>.allocate(capacity: rowLength) : nil
        defer { spare?.deallocate() }
        try t.withUnsafeBytes { raw in
            var r = 0
            while r < rows {
                let n = min(perBlock, rows - r)
                let bytes = (r * rowLength * size)..<((r + n) * rowLength * size)
                let slice = UnsafeRawBufferPointer(rebasing: raw[bytes])
                if t.dtype == .f32, Int(bitPattern: slice.baseAddress) % MemoryLayout<Float>.alignment == 0 {
                    try body(r..<(r + n), slice.bindMemory(to: Float.self))
                } else {
                    let dst = UnsafeMutableBufferPointer(rebasing: (spare ?? floats)[0..<(n * rowLength)])
                    widen(slice, dtype: t.dtype, into: dst)
                    try body(r..<(r + n), UnsafeBufferPointer(dst))
                }
                t.storage.discardMappedPages((t.byteOffset + bytes.lowerBound)..<(t.byteOffset + bytes.upperBound))
                r += n
            }
        }
    }

    /// One slice converted into the caster's buffers.
    private func convert(_ slice: UnsafeRawBufferPointer, from source: DType, to dtype: DType, count n: Int,
                         name: String, file: String) throws -> UnsafeRawBufferPointer {
        // float32 values: read in place when the slice is an aligned float32 array, else widened into `floats`.
        let f: UnsafeBufferPointer<Float>
        if source == .f32, Int(bitPattern: slice.baseAddress) % MemoryLayout<Float>.alignment == 0 {
            f = slice.bindMemory(to: Float.self)
        } else {
            let dst = UnsafeMutableBufferPointer(rebasing: floats[0..<n])
            widen(slice, dtype: source, into: dst)
            f = UnsafeBufferPointer(dst)
        }
        switch dtype {
        case .f32:
            return UnsafeRawBufferPointer(f)
        case .bf16, .f16:
            let dst = UnsafeMutableBufferPointer(rebasing: halves[0..<n])
            // With error statistics, the result is widened back (into the float buffer unless it holds the input).
            let back: UnsafeMutableBufferPointer<Float>? = error == nil ? nil
                : f.baseAddress == UnsafePointer(floats.baseAddress) ? .allocate(capacity: n) : UnsafeMutableBufferPointer(rebasing: floats[0..<n])
            defer { if let back, back.baseAddress != floats.baseAddress { back.deallocate() } }
            // Each core converts (and widens back) a run of the slice: element by element, so the split changes no
            // bit; the error statistics then add the whole slice in order, as one core would.
            let parts = n >= 1 << 16 ? Cores.online : 1
            let overflows = UnsafeMutableBufferPointer<Int>.allocate(capacity: parts)
            defer { overflows.deallocate() }
            nonisolated(unsafe) let (input, output, widened, counts) = (f, dst, back, overflows)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let range = (n * part / parts)..<(n * (part + 1) / parts)
                let x = UnsafeBufferPointer(rebasing: input[range]), y = UnsafeMutableBufferPointer(rebasing: output[range])
                counts[part] = 0
                if dtype == .bf16 {
                    FloatConversion.convertToBF16(x, y)
                } else {
                    counts[part] = FloatConversion.countFloat16Overflows(x)
                    guard counts[part] == 0 else { return }
                    FloatConversion.convertToF16(x, y)
                }
                guard let widened else { return }
                let z = UnsafeMutableBufferPointer(rebasing: widened[range])
                if dtype == .bf16 { FloatConversion.convertFromBF16(UnsafeBufferPointer(y), z) } else { FloatConversion.convertFromF16(UnsafeBufferPointer(y), z) }
            }
            let overflowing = overflows.reduce(0, +)
            guard overflowing == 0 else { throw CastError.float16Overflow(file: file, tensor: name, count: overflowing) }
            if let back { error!.add(f, UnsafeBufferPointer(back)) }
            return UnsafeRawBufferPointer(dst)
        case .f64:
            if doubles == nil { doubles = .allocate(capacity: Self.sliceElements) }
            let dst = UnsafeMutableBufferPointer(rebasing: doubles![0..<n])
            for i in 0..<n { dst[i] = Double(f[i]) }
            return UnsafeRawBufferPointer(dst)
        default:
            preconditionFailure("not a floating dtype: \(dtype)")
        }
    }

    /// Any floating slice (possibly unaligned) widened to float32.
    private func widen(_ raw: UnsafeRawBufferPointer, dtype: DType, into f: UnsafeMutableBufferPointer<Float>) {
        switch dtype {
        case .f32:
            UnsafeMutableRawBufferPointer(f).copyMemory(from: raw)
        case .bf16, .f16:
            let tmp = UnsafeMutableBufferPointer(rebasing: halves[0..<f.count])
            UnsafeMutableRawBufferPointer(tmp).copyMemory(from: raw)
            if dtype == .bf16 {
                FloatConversion.convertFromBF16(UnsafeBufferPointer(tmp), f)
            } else {
                FloatConversion.convertFromF16(UnsafeBufferPointer(tmp), f)
            }
        case .f64:
            for i in 0..<f.count { f[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)))) }
        default:
            preconditionFailure("not a floating dtype: \(dtype)")
        }
    }

    /// A tensor of `dtype` holding `t` cast (in memory; for writers that need whole `Tensor`s).
    func cast(_ t: Tensor, to dtype: DType, name: String) throws -> Tensor {
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

extension Tensor {
    /// A 2-D tensor's transpose, in owned storage of the same dtype (`[rows, cols]` → `[cols, rows]`).
    public func transposed() throws -> Tensor {
        precondition(shape.count == 2, "transpose of a 2-D tensor only")
        let storage = TensorStorage(byteCount: byteCount)
        guard byteCount > 0 else { return try Tensor(dtype: dtype, shape: [shape[1], shape[0]], storage: storage) }
        let (rows, cols, size) = (shape[0], shape[1], dtype.byteSize)
        // Each core transposes a run of the source's columns (and faults in its share of the new pages).
        let parts = byteCount >= 1 << 20 ? min(Cores.online, cols) : 1
        storage.withUnsafeMutableBytes { dst in
            withUnsafeBytes { src in
                nonisolated(unsafe) let (from, to) = (src.baseAddress!, dst.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let first = cols * part / parts, last = cols * (part + 1) / parts
                    arapack_transpose(from + first * size, cols, to + first * rows * size, rows, rows, last - first, size)
                }
            }
        }
        return try Tensor(dtype: dtype, shape: [cols, rows], storage: storage)
    }
}

/// A tensor that cannot take the dtype asked for (a narrowing cast or int8/int4 quantization), or a quantized weight
/// whose tensors do not fit together.
public enum CastError: Error, Equatable, CustomStringConvertible, Sendable {
    case float16Overflow(file: String, tensor: String, count: Int)
    case quantizedNotMatrix(tensor: String, scheme: String)
    case quantizedGroupSize(tensor: String, flag: String, groupSize: Int, columns: Int)
    /// int4 packs eight values an int32 word, and arapack writes whole words a row.
    case int4Columns(tensor: String, columns: Int)
    /// A quantized weight and its scale that do not make a pair (docs/bundle.md).
    case quantizedParts(tensor: String, weightDType: DType, weightShape: [Int], scaleDType: DType, scaleShape: [Int])
    /// An int4 weight whose `_shape` tensor is missing, malformed or states another shape than its words and scale.
    case int4Shape(tensor: String, stated: String?, expected: [Int])

    public var description: String {
        switch self {
        case let .float16Overflow(file, tensor, count):
            return "\(file): tensor \"\(tensor)\": \(count) value(s) exceed the float16 range (|x| ≥ 65520) and would become infinite; keep it in bf16 or f32"
        case let .quantizedNotMatrix(tensor, scheme): return "\(tensor): \(scheme) quantization applies to 2-D weights"
        case let .quantizedGroupSize(tensor, flag, group, columns):
            return "\(tensor): \(flag) \(group) does not divide the \(columns) columns; pass a \(flag) that divides every row, or 0 for one scale per row"
        case let .int4Columns(tensor, columns):
            return "\(tensor): int4 packs 8 columns in each int32 word, and the \(columns) columns are not a multiple of 8"
        case let .quantizedParts(tensor, weightDType, weightShape, scaleDType, scaleShape):
            return "\(tensor): a quantized weight is I8 [rows, cols] (int8) or I32 [rows, cols/8] (int4) with an F32 scale [rows, groups] whose groups divide cols; found \(weightDType.name) \(weightShape) and \(scaleDType.name) \(scaleShape)"
        case let .int4Shape(tensor, stated, expected):
            return "\(tensor): an int4 weight's _shape tensor must be I64 [2] = \(expected) (its words and scale); found " + (stated ?? "none")
        }
    }
}
