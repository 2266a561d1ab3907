/// Why a pickle was refused. Offsets are byte offsets into the pickle stream.
public enum PickleError: Error, Equatable, CustomStringConvertible, Sendable {
    case refusedGlobal(global: String, offset: Int)
    case unsupportedOpcode(opcode: UInt8, offset: Int)
    case truncated(offset: Int)
    case malformed(offset: Int, detail: String)
    case limitExceeded(offset: Int, what: String, limit: Int)

    public var description: String {
        switch self {
        case let .refusedGlobal(global, offset):
            return "pickle refers to global \(global) at byte \(offset), which is not allowed (arapack never executes pickled code)"
        case let .unsupportedOpcode(opcode, offset):
            return "pickle opcode 0x\(String(opcode, radix: 16)) at byte \(offset) is not supported"
        case let .truncated(offset):
            return "pickle ends early at byte \(offset)"
        case let .malformed(offset, detail):
            return "pickle malformed at byte \(offset): \(detail)"
        case let .limitExceeded(offset, what, limit):
            return "pickle exceeds the \(what) limit of \(limit) at byte \(offset)"
        }
    }
}
