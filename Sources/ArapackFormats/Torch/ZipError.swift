/// Why a zip archive (a `torch.save` file or DCP item) was refused.
public enum ZipError: Error, Equatable, CustomStringConvertible, Sendable {
    case notAZip(file: String, detail: String)
    case malformed(file: String, offset: Int, detail: String)
    case unsafeName(file: String, name: String)
    case unsupported(file: String, entry: String, detail: String)
    case entryNotFound(file: String, entry: String)
    case expansionLimit(file: String, entry: String, limit: Int)
    case archiveExpansionLimit(file: String, entry: String, limit: Int)
    case checksumMismatch(file: String, entry: String, expected: UInt32, found: UInt32)

    public var description: String {
        switch self {
        case let .notAZip(file, detail): return "\(file): not a zip archive: \(detail)"
        case let .malformed(file, offset, detail): return "\(file): zip structure broken at byte \(offset): \(detail)"
        case let .unsafeName(file, name): return "\(file): zip entry name \"\(name)\" is absolute, contains '..' or is outside the top folder"
        case let .unsupported(file, entry, detail): return "\(file): zip entry \(entry): \(detail)"
        case let .entryNotFound(file, entry): return "\(file): zip has no entry \(entry)"
        case let .expansionLimit(file, entry, limit): return "\(file): zip entry \(entry) inflates past the limit of \(limit) bytes"
        case let .archiveExpansionLimit(file, entry, limit):
            return "\(file): with zip entry \(entry) the archive's DEFLATE entries would inflate past \(limit) bytes in all (a zip bomb?)"
        case let .checksumMismatch(file, entry, expected, found):
            return "\(file): zip entry \(entry): CRC-32 is \(String(found, radix: 16)), the directory says \(String(expected, radix: 16))"
        }
    }
}
