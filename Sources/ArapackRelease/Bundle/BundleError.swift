import ArapackFormats
import ArapackModel
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// A bundle (or a file meant for one) that cannot be read as one.
public enum BundleError: Error, Equatable, CustomStringConvertible, Sendable {
    /// What stands where a bundle's regular file should be.
    public enum Entry: Sendable { case symlink, notAFile, folderTwoDeep, special }

    case notRegular(path: String, kind: Entry)
    case missingFile(bundle: String, name: String)
    case jsonTooLarge(file: String, limit: Int)
    case invalidJSON(file: String, detail: String)
    case shortRead(file: String, name: String, read: Int, size: Int)
    case tensorInTwoShards(file: String, tensor: String)
    /// A user's model card (`--model-card`) that is too large, not UTF-8, or has front matter the Hub would not read.
    case modelCard(file: String, problem: String)
    case manifest(file: String, problem: JSONDecodingError)
    case tooManyFiles(folder: String, limit: Int)

    public var description: String {
        switch self {
        case let .notRegular(path, .symlink): return "\(path): a symlink; a bundle holds regular files only"
        case let .notRegular(path, .notAFile): return "\(path): not a regular file; a bundle holds regular files, at most one folder deep"
        case let .notRegular(path, .folderTwoDeep): return "\(path): a folder two deep; a bundle holds regular files, at most one folder deep"
        case let .notRegular(path, .special): return "\(path): not a regular file (a FIFO, device or socket)"
        case let .missingFile(bundle, name): return "\(bundle): \(name) is missing"
        case let .jsonTooLarge(file, limit): return "\(file): larger than \(limit) bytes"
        case let .invalidJSON(file, detail): return "\(file): not valid JSON: \(detail)"
        case let .shortRead(file, name, read, size): return "\(file): \(name): read \(read) bytes of \(size)"
        case let .tensorInTwoShards(file, tensor): return "\(file): tensor \"\(tensor)\" appears in two shards"
        case let .modelCard(file, problem): return "\(file): \(problem)"
        case let .manifest(file, problem): return "\(file): \(problem)"
        case let .tooManyFiles(folder, limit): return "\(folder): more than \(limit) files; a bundle holds a release's dozen files and its shards"
        }
    }
}
