#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors from opening or mapping a file.
public struct FileError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The path involved.
    public let path: String
    /// What failed, e.g. `open`, `mmap`.
    public let operation: String
    /// The errno value.
    public let code: Int32

    public init(path: String, operation: String, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(path): \(operation) failed: \(String(cString: strerror(code)))"
    }
}

/// A read-only memory map of a whole file; unmaps itself when released.
///
/// Wraps `open(2)`, `fstat(2)` and `mmap(2)` with `PROT_READ, MAP_PRIVATE`. The mapping never changes
/// size: a file truncated by another process after mapping is outside what this type protects against.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened from.
    public let path: String
    /// The file's size in bytes at the time of mapping.
    public let count: Int
    private let base: UnsafeRawPointer?

    /// Maps the file at `path`. Throws `FileError` if it cannot be opened, is not a regular file or
    /// cannot be mapped.
    public init(path: String) throws {
        self.path = path
        // O_NONBLOCK: a FIFO is opened without waiting for a writer, then refused as not a regular file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, operation: "fstat", code: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FileError(path: path, operation: "open (not a regular file)", code: EISDIR)
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileError(path: path, operation: "mmap", code: errno) }
        base = UnsafeRawPointer(p)
    }

    /// A read-only anonymous mapping holding a copy of `bytes`, named `label` in errors (for readers that
    /// take a mapped file, fed from memory: tests and fuzzing).
    public init(copying bytes: UnsafeRawBufferPointer, label: String) throws {
        path = label
        count = bytes.count
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { throw FileError(path: label, operation: "mmap", code: errno) }
        p.copyMemory(from: bytes.baseAddress!, byteCount: count)
        mprotect(p, count, PROT_READ)
        base = UnsafeRawPointer(p)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// Calls `body` with the mapped bytes. Do not escape the pointer from the closure.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(start: base, count: count)) }
    }

    /// Advises the kernel that `range` will be read sequentially soon.
    public func adviseSequential(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        madvise(UnsafeMutableRawPointer(mutating: base + start), range.upperBound - start, MADV_SEQUENTIAL | MADV_WILLNEED)
    }

    /// Drops the resident pages wholly inside `range` (they are read again from the file if touched), so
    /// streaming through a large mapping keeps resident memory bounded.
    public func discardPages(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}
