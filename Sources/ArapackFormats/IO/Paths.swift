#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArapackTensor
import CSystem
import Dispatch

/// Removes `path` and, for a folder, everything under it (symbolic links are removed, never followed).
public func removeTree(_ path: String) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    if (st.st_mode & S_IFMT) == S_IFDIR {
        for c in (try? directoryEntries(path)) ?? [] { removeTree(path + "/" + c) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// The names in a folder (without `.` and `..`), sorted by their bytes.
public func directoryEntries(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw FileError(path: path, operation: "opendir", code: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
}

/// The size in bytes of the file at `path` (stat, nothing read or mapped).
public func fileSize(_ path: String) throws -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { throw FileError(path: path, operation: "stat", code: errno) }
    return Int(st.st_size)
}

/// What is at a path, by `lstat` (a symlink is reported as one, not followed; nothing is opened).
public enum FileKind: Equatable, Sendable {
    case regular(size: Int)
    case directory
    case symlink
    /// A FIFO, device or socket.
    case other

    /// The kind of what is at `path`.
    public init(atPath path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw FileError(path: path, operation: "lstat", code: errno) }
        switch st.st_mode & S_IFMT {
        case S_IFREG: self = .regular(size: Int(st.st_size))
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        default: self = .other
        }
    }
}

/// Whether anything (file, folder, link) exists at `path`.
public func pathExists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
}

/// Fsyncs the folder holding `path` so a rename into it is durable.
public func syncDirectory(of path: String) {
    let (dir, _) = splitPath(path)
    let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 {
        fsync(fd)
        close(fd)
    }
}

/// `path` without trailing slashes (`out/` and `out//` name the folder `out`; `/` stays `/`): the one place a path
/// given on the command line is trimmed.
public func trimmingTrailingSlashes(_ path: String) -> String {
    var p = Substring(path)
    while p.count > 1 && p.hasSuffix("/") { p = p.dropLast() }
    return String(p)
}

/// Splits a path into folder and last component (`("", name)` for a bare name).
public func splitPath(_ path: String) -> (String, String) {
    guard let slash = path.lastIndex(of: "/") else { return ("", path) }
    let dir = String(path[..<slash])
    return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
}
