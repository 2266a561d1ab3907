/// A dense, row-major, little-endian tensor: a dtype, a shape, and the bytes that hold it.
///
/// Several tensors may view one `TensorStorage` at different byte offsets (a tied pair shares one).
public struct Tensor: @unchecked Sendable {
    /// Element type.
    public let dtype: DType
    /// Dimensions, outermost first; `[]` is a scalar.
    public let shape: [Int]
    /// The bytes, shared between tensors that alias.
    public let storage: TensorStorage
    /// Where this tensor's bytes begin inside `storage`.
    public let byteOffset: Int

    /// A tensor over `storage[byteOffset ..< byteOffset + byteCount]`.
    /// Throws when the shape overflows or the storage is too short.
    public init(dtype: DType, shape: [Int], storage: TensorStorage, byteOffset: Int = 0) throws {
        guard let bytes = Shape.byteCount(shape, dtype: dtype) else {
            throw TensorError.shapeOverflow(shape: shape, dtype: dtype)
        }
        let (end, overflow) = byteOffset.addingReportingOverflow(bytes)
        guard byteOffset >= 0, !overflow, end <= storage.count else {
            throw TensorError.byteCountMismatch(expected: bytes, found: max(0, storage.count - max(byteOffset, 0)))
        }
        self.dtype = dtype
        self.shape = shape
        self.storage = storage
        self.byteOffset = byteOffset
    }

    /// A tensor owning a copy of `bytes`, which must be exactly the size the shape needs.
    public init<C: Collection>(dtype: DType, shape: [Int], bytes: C) throws where C.Element == UInt8 {
        guard let n = Shape.byteCount(shape, dtype: dtype) else {
            throw TensorError.shapeOverflow(shape: shape, dtype: dtype)
        }
        guard n == bytes.count else { throw TensorError.byteCountMismatch(expected: n, found: bytes.count) }
        try self.init(dtype: dtype, shape: shape, storage: TensorStorage(copying: bytes))
    }

    /// A float32 tensor holding `values`.
    public init(float32 values: [Float], shape: [Int]) throws {
        try self.init(float32Shape: shape) { out in
            guard out.count == values.count else { throw TensorError.byteCountMismatch(expected: out.count * 4, found: values.count * 4) }
            _ = out.initialize(from: values)
        }
    }

    /// A float32 tensor of `shape` whose values `fill` writes into its own (zeroed) storage: no intermediate array,
    /// for the values a reader computes (dequantized weights).
    public init(float32Shape shape: [Int], fill: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        guard let n = Shape.byteCount(shape, dtype: .f32) else { throw TensorError.shapeOverflow(shape: shape, dtype: .f32) }
        let storage = TensorStorage(byteCount: n)
        try storage.withUnsafeMutableBytes { try fill($0.bindMemory(to: Float.self)) }
        try self.init(dtype: .f32, shape: shape, storage: storage)
    }

    /// Number of elements.
    public var elementCount: Int { Shape.elementCount(shape)! }

    /// Number of bytes.
    public var byteCount: Int { elementCount * dtype.byteSize }

    /// Calls `body` with exactly this tensor's bytes. Do not escape the pointer from the closure.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes { all in
            try body(UnsafeRawBufferPointer(rebasing: all[byteOffset..<(byteOffset + byteCount)]))
        }
    }

    /// A copy of the bytes.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Whether both tensors have the same dtype, shape and bytes.
    public func isBitIdentical(to other: Tensor) -> Bool {
        guard dtype == other.dtype, shape == other.shape else { return false }
        return withUnsafeBytes { a in other.withUnsafeBytes { b in a.elementsEqual(b) } }
    }

    /// Whether both tensors view the same bytes of the same storage.
    public func sharesStorage(with other: Tensor) -> Bool {
        storage === other.storage && byteOffset == other.byteOffset && dtype == other.dtype && shape == other.shape
    }
}
