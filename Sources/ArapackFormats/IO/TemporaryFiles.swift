#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArapackTensor
import CSystem
import Dispatch

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

