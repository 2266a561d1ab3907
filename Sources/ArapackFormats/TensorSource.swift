import ArapackTensor

/// Anything that holds named tensors: a safetensors file, a sharded set, a checkpoint.
public protocol TensorSource: AnyObject {
    /// A short name of the format, e.g. `safetensors`.
    var formatName: String { get }
    /// Paths of the files the source reads, in a stable order.
    var filePaths: [String] { get }
    /// The file holding `name`, for sources spread over several files.
    func filePath(of name: String) -> String?
    /// Tensor names in a stable order.
    var tensorNames: [String] { get }
    /// The dtype and shape of `name` without reading its data.
    func descriptor(named name: String) throws -> TensorDescriptor
    /// The tensor `name`; mapped sources return views of their mapping without copying.
    func tensor(named name: String) throws -> Tensor
}

/// A tensor's dtype and shape.
public struct TensorDescriptor: Equatable, Sendable {
    public var dtype: DType
    public var shape: [Int]
    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }

    /// Bytes the tensor occupies.
    public var byteCount: Int { Shape.byteCount(shape, dtype: dtype) ?? 0 }
    /// Elements of the tensor.
    public var elementCount: Int { Shape.elementCount(shape) ?? 0 }
}
