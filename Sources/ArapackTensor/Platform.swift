// arapack builds on Linux only: it calls Glibc, renameat2, sync_file_range and madvise, and links libzstd and
// libcrypto as Debian packages them. Package.swift declares no other platform; this says so at
// build time instead of failing on the first missing symbol.
#if !os(Linux)
#error("arapack builds on Linux only (Glibc, renameat2, sync_file_range; libzstd and libcrypto from Debian)")
#endif

#if canImport(Glibc)
import Glibc
#endif

/// The machine's cores, for work split evenly among them (widening, dequantizing): how many there are changes how
/// fast such work runs, never what it computes.
public enum Cores {
    /// The cores online now (at least 1).
    public static var online: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

/// A minimal mutex over pthread, for the few counters shared across threads.
public final class NSLockLike: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    /// Takes the lock for good (the interrupt thread, which then exits the process).
    public func lock() { pthread_mutex_lock(&mutex) }
    /// Runs `body` holding the lock.
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
