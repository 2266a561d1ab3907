#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArapackTensor
import CSystem
import Dispatch

/// A folder that appears at its destination only complete: files are written into a temporary sibling
/// (`.<name>.arapack-tmp-<pid>-<n>`), which `commit` renames into place. Released without `commit`, the
/// temporary folder and everything in it are removed.
public final class AtomicDirectory {
    public let destination: String
    public let temporaryPath: String
    private var committed = false

    public init(destination: String) throws {
        self.destination = destination
        temporaryPath = temporarySibling(of: destination)
        TemporaryFiles.register(temporaryPath)
        guard mkdir(temporaryPath, 0o755) == 0 else {
            let code = errno
            TemporaryFiles.unregister(temporaryPath)
            throw FileError(path: temporaryPath, operation: "create", code: code)
        }
    }

    deinit {
        if !committed { removeTree(temporaryPath) }
        TemporaryFiles.unregister(temporaryPath)
    }

    /// The path of `name` inside the temporary folder.
    public func path(_ name: String) -> String { temporaryPath + "/" + name }

    /// Renames the folder into place. An existing destination is refused unless `replacing`; then the two
    /// are swapped atomically and the old one removed, so the destination is never missing or partial.
    public func commit(replacing: Bool) throws {
        syncDirectory(of: path("."))
        if arapack_rename_noreplace(temporaryPath, destination) != 0 {
            let code = errno
            guard code == EEXIST || code == ENOTEMPTY, replacing else {
                if code == EEXIST || code == ENOTEMPTY { throw DestinationExists(path: destination) }
                throw FileError(path: destination, operation: "rename", code: code)
            }
            guard arapack_rename_exchange(temporaryPath, destination) == 0 else {
                throw FileError(path: destination, operation: "replace", code: errno)
            }
            committed = true
            removeTree(temporaryPath)
        }
        committed = true
        syncDirectory(of: destination)
    }
}
