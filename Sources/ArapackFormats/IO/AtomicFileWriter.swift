#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArapackTensor
import CSystem
import Dispatch

/// Writes a file so that it appears at its destination only complete: the bytes go to a temporary
/// sibling (`.<name>.arapack-tmp-<pid>-<n>`), which `commit()` fsyncs and renames into place.
/// A writer released without `commit()` removes its temporary file.
public final class AtomicFileWriter {
    /// The final path.
    public let destination: String
    /// The temporary path being written.
    public let temporaryPath: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var committed = false
    /// Set by `sync()`: the file is complete.
    private var finished = false
    /// Bytes written so far.
    public private(set) var bytesWritten = 0
    /// SHA-256 of everything written, when created with `hashing`.
    private let digest: SHA256?
    /// The lower-case hex SHA-256 of the file, set by `sync()` (or `commit()`) when created with `hashing`.
    public private(set) var sha256: String?

    /// Creates the temporary file next to `destination`.
    /// With `hashing`, the SHA-256 of the bytes is computed as they are written (`sha256` after commit).
    public init(destination: String, bufferSize: Int = 8 << 20, hashing: Bool = false) throws {
        self.destination = destination
        digest = hashing ? SHA256() : nil
        temporaryPath = temporarySibling(of: destination)
        TemporaryFiles.register(temporaryPath)  // before it exists: an interrupt in between still removes it
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let code = errno
            TemporaryFiles.unregister(temporaryPath)
            throw FileError(path: temporaryPath, operation: "create", code: code)
        }
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit {
        buffer.deallocate()
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
        TemporaryFiles.unregister(temporaryPath)
    }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "write after sync() to \(temporaryPath)")
        if bytes.count >= buffer.count {
            try flush()
            if let digest {
                // Hash on one core while the kernel copies the same (read-only) bytes on the other.
                nonisolated(unsafe) let shared = bytes
                nonisolated(unsafe) var failure: Error?
                nonisolated(unsafe) let writer = self, hasher = digest
                DispatchQueue.concurrentPerform(iterations: 2) { part in
                    if part == 0 { hasher.update(shared) } else { do { try writer.writeAll(shared) } catch { failure = error } }
                }
                if let failure { throw failure }
            } else {
                try writeAll(bytes)
            }
        } else {
            digest?.update(bytes)
            if buffered + bytes.count > buffer.count { try flush() }
            UnsafeMutableRawBufferPointer(rebasing: buffer[buffered..<(buffered + bytes.count)]).copyMemory(from: bytes)
            buffered += bytes.count
        }
        bytesWritten += bytes.count
    }

    /// Appends the bytes of `array`.
    public func write(_ array: [UInt8]) throws {
        try array.withUnsafeBytes { try write($0) }
    }

    /// Appends the UTF-8 of `text`.
    public func write(_ text: String) throws {
        try write(Array(text.utf8))
    }

    /// Ends the file: flushes and fsyncs it and, when hashing, sets `sha256`; nothing may be written after.
    /// A `commit` right after is only a rename, so a caller that must commit several files together
    /// syncs them all first, to keep the window between the renames short.
    public func sync() throws {
        guard !finished else { return }
        try flush()
        guard fsync(fd) == 0 else { throw FileError(path: temporaryPath, operation: "fsync", code: errno) }
        finished = true
        sha256 = digest?.hexDigest()
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination, then fsyncs the folder.
    /// With `replacing` false an existing destination is left alone and the commit fails with `EEXIST`.
    public func commit(replacing: Bool = true) throws {
        try sync()
        close(fd)
        fd = -1
        try moveIntoPlace(temporaryPath, to: destination, replacing: replacing)
        committed = true
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<buffered]))
        buffered = 0
    }

    /// Bytes of the file handed to the kernel and not yet scheduled for writeback.
    private var writtenToFile = 0
    private var writebackStart = 0
    /// Writeback is started every this many bytes, so the final fsync has little left to wait for.
    private static let writebackInterval = 64 << 20

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        defer {
            if writtenToFile - writebackStart >= Self.writebackInterval {
                _ = arapack_start_writeback(fd, Int64(writebackStart), Int64(writtenToFile - writebackStart))
                writebackStart = writtenToFile
            }
        }
        var done = 0
        while done < bytes.count {
            let n = retryingOnInterrupt { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }
            guard n >= 0 else { throw FileError(path: temporaryPath, operation: "write", code: errno) }
            done += n
            writtenToFile += n
        }
    }
}

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

/// Renames the finished file or folder `path` onto `destination` (on the same file system), then fsyncs the folder.
/// With `replacing` false an existing destination is left alone and the move fails with `DestinationExists`.
public func moveIntoPlace(_ path: String, to destination: String, replacing: Bool) throws {
    let ok = replacing ? rename(path, destination) == 0 : arapack_rename_noreplace(path, destination) == 0
    guard ok else {
        if errno == EEXIST { throw DestinationExists(path: destination) }
        throw FileError(path: destination, operation: "rename", code: errno)
    }
    syncDirectory(of: destination)
}

/// Temporary paths this process is writing, removed if it is interrupted (SIGINT, SIGTERM, SIGHUP), and
/// stale temporaries of processes that died (SIGKILL, power loss) removed by the next run.
public enum TemporaryFiles {
    nonisolated(unsafe) private static var paths: [String] = []
    private static let lock = NSLockLike()

    public static func register(_ path: String) { lock.withLock { paths.append(path) } }
    public static func unregister(_ path: String) { lock.withLock { paths.removeAll { $0 == path } } }

    /// From here on SIGINT, SIGTERM and SIGHUP remove every registered temporary, then exit with 128 + the
    /// signal (a signal ignored when the process started stays ignored). The handler only writes the
    /// signal's number to a pipe; a thread of its own reads it and cleans up as ordinary code, which may
    /// lock and allocate (a handler that interrupted `malloc` or the registry's lock could deadlock or read a
    /// half-updated list). It holds the lock until the exit, so no temporary is registered, or created, behind it.
    public static func removeOnInterrupt() {
        var ends: [Int32] = [0, 0]
        guard arapack_pipe(&ends) == 0 else { return }  // no pipe: keep the default (terminate)
        var thread = pthread_t()
        let reader = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        reader.pointee = ends[0]
        guard pthread_create(&thread, nil, { TemporaryFiles.awaitInterrupt(on: $0!.load(as: Int32.self)) }, reader) == 0 else { return }
        _ = arapack_signals_to_pipe(ends[1])
    }

    private static func awaitInterrupt(on fd: Int32) -> Never {
        var sig: UInt8 = 0
        while read(fd, &sig, 1) != 1 {}
        lock.lock()
        for p in paths {
            // Another thread may still be creating files inside a temporary folder: retry until it is gone.
            var info = stat()
            for _ in 0..<10 where lstat(p, &info) == 0 { removeTree(p) }
        }
        _exit(128 + Int32(sig))
    }

    /// Removes `.<name>.arapack-tmp-<pid>-<n>` siblings of `destination` whose process no longer exists.
    /// Returns the paths removed.
    @discardableResult
    public static func removeStale(of destination: String) -> [String] {
        let (dir, base) = splitPath(destination)
        return removeStale(in: dir, prefix: ".\(base).arapack-tmp-")
    }

    /// Removes the entries of `directory` ("" for the current one) named `<prefix><pid>-…` whose process
    /// no longer exists. Returns the paths removed.
    @discardableResult
    public static func removeStale(in directory: String, prefix: String) -> [String] {
        var removed: [String] = []
        for name in (try? directoryEntries(directory.isEmpty ? "." : directory)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count).prefix { $0 != "-" }), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                let path = (directory.isEmpty ? "" : directory + "/") + name
                removeTree(path)
                removed.append(path)
            }
        }
        return removed
    }
}

/// The destination appeared while the output was being written (another run won the race); the finished
/// output was not moved into place and is removed.
public struct DestinationExists: Error, CustomStringConvertible, Sendable {
    public let path: String
    public var description: String { "\(path) appeared while this run was writing (another run?); it was left as it is and this run's output discarded" }
}

/// `.<name>.arapack-tmp-<pid>-<n>` next to `path`, unique within the process.
func temporarySibling(of path: String) -> String {
    let (dir, base) = splitPath(path)
    let n = temporaryCounterLock.withLock { () -> Int in
        temporaryCounter += 1
        return temporaryCounter
    }
    return (dir.isEmpty ? "" : dir + "/") + ".\(base).arapack-tmp-\(getpid())-\(n)"
}

nonisolated(unsafe) private var temporaryCounter = 0
private let temporaryCounterLock = NSLockLike()

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

/// A minimal mutex over pthread, for the few counters shared across threads.
public final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    /// Takes the lock for good (the interrupt thread, which then exits the process).
    func lock() { pthread_mutex_lock(&mutex) }
    /// Runs `body` holding the lock.
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
