import ArapackTensor

/// Why a safetensors file or sharded index was refused. Every case names the file and what was expected.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible, Sendable {
    case fileTooSmall(file: String, size: Int)
    case headerTooLarge(file: String, length: UInt64, limit: Int)
    case headerPastEndOfFile(file: String, headerEnd: UInt64, fileSize: Int)
    case invalidHeaderJSON(file: String, detail: String)
    case headerNotObject(file: String)
    case duplicateKey(file: String, key: String)
    case invalidMetadata(file: String, detail: String)
    case invalidEntry(file: String, tensor: String, detail: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case shapeOverflow(file: String, tensor: String, shape: String)
    case sizeMismatch(file: String, tensor: String, expected: Int, found: Int)
    case offsetsNotContiguous(file: String, tensor: String, expectedBegin: Int, found: Int)
    case bufferLengthMismatch(file: String, expected: Int, found: Int)
    case tensorNotFound(file: String, tensor: String)
    case invalidIndex(file: String, detail: String)
    case invalidTensorName(file: String, tensor: String, detail: String)
    /// A stream (`SafetensorsStreamScanner`) that goes on past the last tensor's data, or ends inside the header.
    case bytesAfterLastTensor(file: String)
    case incompleteHeader(file: String)

    public var description: String {
        switch self {
        case let .fileTooSmall(file, size):
            return "\(file): file is \(size) bytes, smaller than the 8-byte header length"
        case let .headerTooLarge(file, length, limit):
            return "\(file): header length \(length) exceeds the limit of \(limit) bytes"
        case let .headerPastEndOfFile(file, end, size):
            return "\(file): header ends at byte \(end), past the end of the \(size)-byte file"
        case let .invalidHeaderJSON(file, detail):
            return "\(file): header is not valid JSON: \(detail)"
        case let .headerNotObject(file):
            return "\(file): header is not a JSON object"
        case let .duplicateKey(file, key):
            return "\(file): header names \"\(key)\" twice (duplicate key)"
        case let .invalidMetadata(file, detail):
            return "\(file): __metadata__ \(detail)"
        case let .invalidEntry(file, tensor, detail):
            return "\(file): tensor \"\(tensor)\": \(detail)"
        case let .unknownDType(file, tensor, dtype):
            return "\(file): tensor \"\(tensor)\": unknown or unsupported dtype \"\(dtype)\""
        case let .shapeOverflow(file, tensor, shape):
            return "\(file): tensor \"\(tensor)\": shape \(shape) overflows the element or byte count"
        case let .sizeMismatch(file, tensor, expected, found):
            return "\(file): tensor \"\(tensor)\": data_offsets span \(found) bytes but dtype and shape need \(expected)"
        case let .offsetsNotContiguous(file, tensor, expected, found):
            return "\(file): tensor \"\(tensor)\": data begins at offset \(found), expected \(expected) (gap or overlap)"
        case let .bufferLengthMismatch(file, expected, found):
            return "\(file): data buffer is \(found) bytes but the tensors cover \(expected) (trailing or missing bytes)"
        case let .tensorNotFound(file, tensor):
            return "\(file): no tensor named \"\(tensor)\""
        case let .invalidIndex(file, detail):
            return "\(file): \(detail)"
        case let .invalidTensorName(file, tensor, detail):
            return "\(file): tensor \"\(tensor)\": \(detail)"
        case let .bytesAfterLastTensor(file): return "\(file): bytes after the last tensor"
        case let .incompleteHeader(file): return "\(file): the safetensors header is incomplete"
        }
    }
}
