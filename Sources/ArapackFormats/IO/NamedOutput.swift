#if canImport(Glibc)
import Glibc
#endif
import ArapackTensor

/// An output file the user named on the command line (`--report`, `--signature`, an archive beside DST): written
/// where the name points, as an ordinary `open` + `write` would, yet never half-written over a regular file.
///
/// - `-` is standard output.
/// - A symbolic link is followed (a chain of them too, a dangling one to the file it names): the link stays, and its
///   target receives the bytes.
/// - A FIFO, character or block device, or socket is opened for writing and written in order (no temporary file,
///   no rename): `/dev/stdout`, `/dev/null`, a pipe another program reads.
/// - A regular file, or nothing, is replaced atomically: a temporary sibling of the link's target, renamed into place.
/// - A folder is refused.
public enum NamedOutput {
    /// The name that means standard output.
    public static let standardOutput = "-"

    /// Writes `text` to the output `path` names (see the type's rules).
    public static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path)
    }

    /// Writes `bytes` to the output `path` names (see the type's rules).
    public static func write(_ bytes: [UInt8], to path: String) throws {
        if path == standardOutput {
            try writeAll(bytes, to: 1, path: "standard output")
            return
        }
        let target = try resolvingSymbolicLinks(path)
        var st = stat()
        if stat(target, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFREG: break
            case S_IFDIR: throw FileError(path: path, operation: "write", code: EISDIR)
            default:
                let fd = open(target, O_WRONLY | O_CLOEXEC | O_NOCTTY)
                guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
                defer { close(fd) }
                try writeAll(bytes, to: fd, path: path)
                return
            }
        }
        let out = try AtomicFileWriter(destination: target)
        try bytes.withUnsafeBytes { try out.write($0) }
        try out.commit()
    }

    /// The path `path` leads to once every symbolic link on its last component is followed (a relative link is read
    /// from the link's folder). Folders on the way are left as written: the kernel follows those. A path that is no
    /// link comes back unchanged; more than 40 links in a row is `ELOOP`, as for `open`.
    public static func resolvingSymbolicLinks(_ path: String) throws -> String {
        var current = path
        for _ in 0..<40 {
            var st = stat()
            guard lstat(current, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK else { return current }
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(current, &buffer, buffer.count - 1)
            guard n >= 0 else { throw FileError(path: current, operation: "readlink", code: errno) }
            let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if link.hasPrefix("/") {
                current = link
            } else {
                let (dir, _) = splitPath(current)
                current = (dir.isEmpty ? "" : dir + "/") + link
            }
        }
        throw FileError(path: path, operation: "open", code: ELOOP)
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = retryingOnInterrupt { Glibc.write(fd, raw.baseAddress! + done, raw.count - done) }
                guard n >= 0 else { throw FileError(path: path, operation: "write", code: errno) }
                done += n
            }
        }
    }
}
