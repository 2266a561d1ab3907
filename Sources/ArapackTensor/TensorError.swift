/// Errors raised by tensor construction and element access.
public enum TensorError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A dimension is negative or the element/byte count overflows `Int`.
    case shapeOverflow(shape: [Int], dtype: DType)
    /// The bytes given do not match what the shape and dtype require.
    case byteCountMismatch(expected: Int, found: Int)
    /// An operation needed a different element type.
    case wrongDType(expected: [DType], found: DType)
    /// A value does not fit the target type (e.g. f16 overflow).
    case valueOutOfRange(String)

    public var description: String {
        switch self {
        case let .shapeOverflow(shape, dtype):
            return "shape \(shape) of \(dtype) overflows the element or byte count"
        case let .byteCountMismatch(expected, found):
            return "expected \(expected) bytes of data, found \(found)"
        case let .wrongDType(expected, found):
            return "expected dtype \(expected.map(\.name).joined(separator: " or ")), found \(found)"
        case let .valueOutOfRange(what):
            return what
        }
    }
}
