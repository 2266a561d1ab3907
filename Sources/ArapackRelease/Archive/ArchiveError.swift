import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// Why an archive could not be written or read. `file` is the archive; offsets are into its tar stream.
public enum ArchiveError: Error, Equatable, CustomStringConvertible, Sendable {
    case nameTooLong(file: String, name: String)
    case zstdContext(file: String)
    case zstd(file: String, message: String)
    case zstdTruncated(file: String)
    case tarTruncated(file: String)
    case entryAfterEnd(file: String, offset: Int)
    case badNumber(file: String, offset: Int, text: String)
    case checksum(file: String, offset: Int)
    case sizeOutOfRange(file: String, entry: String)
    case notRelative(file: String, entry: String)
    case outsideTop(file: String, entry: String, top: String)
    case unexpectedFolder(file: String, entry: String)
    case tooDeep(file: String, entry: String)
    case duplicate(file: String, entry: String)
    case tooManyEntries(file: String, limit: Int)
    case entryType(file: String, entry: String, type: UInt8)
    /// Unpacking would write more than `limit` bytes.
    case bomb(file: String, limit: Int)

    public var description: String {
        switch self {
        case let .nameTooLong(file, name): return "\(file): entry name \"\(name)\" is too long for a ustar archive"
        case let .zstdContext(file): return "\(file): zstd could not allocate a context"
        case let .zstd(file, message): return "\(file): zstd: \(message)"
        case let .zstdTruncated(file): return "\(file): the zstd stream is truncated"
        case let .tarTruncated(file): return "\(file): the tar stream ends inside an entry or without its end blocks"
        case let .entryAfterEnd(file, offset): return "\(file): tar entry at offset \(offset) after the end blocks"
        case let .badNumber(file, offset, text): return "\(file): tar header at offset \(offset): bad number \"\(text)\""
        case let .checksum(file, offset): return "\(file): tar header at offset \(offset): checksum mismatch"
        case let .sizeOutOfRange(file, entry): return "\(file): tar entry \"\(entry)\": size out of range"
        case let .notRelative(file, entry): return "\(file): tar entry \"\(entry)\" is not a plain relative path"
        case let .outsideTop(file, entry, top): return "\(file): tar entry \"\(entry)\" is outside the top folder \"\(top)\""
        case let .unexpectedFolder(file, entry): return "\(file): unexpected folder entry \"\(entry)\""
        case let .tooDeep(file, entry): return "\(file): tar entry \"\(entry)\" is nested too deep; a bundle holds files at most one folder deep"
        case let .duplicate(file, entry): return "\(file): tar entry \"\(entry)\" appears twice"
        case let .tooManyEntries(file, limit): return "\(file): more than \(limit) entries; a bundle holds a release's dozen files and its shards"
        case let .entryType(file, entry, type):
            return "\(file): tar entry \"\(entry)\" has type '\(Character(Unicode.Scalar(type)))'; only files and one folder are allowed"
        case let .bomb(file, limit):
            return "\(file): unpacks to more than \(limit) bytes (8 × the archive's size + 256 MiB): a decompression bomb? nothing was kept"
        }
    }
}
