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
    /// The device holding the file (`st_dev`), whose readahead limits `adviseWillNeed` reads; nil for a copy in memory.
    private let device: UInt64?

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
        device = UInt64(st.st_dev)
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
        device = nil
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

    /// Asks the kernel to start reading `range` of the file into memory now (`MADV_WILLNEED`), without waiting for
    /// it: a file not yet in the page cache is then read ahead in large requests, and later reads of `range` find it
    /// there instead of faulting it in a little at a time. Linux reads at most one readahead window (the device's
    /// `read_ahead_kb`) or one largest request per call, so the range is asked for that much at a time
    /// (`readaheadLimit`); a 2 MiB span whose first, middle and last pages are in memory already is taken to be there
    /// and skipped (asking costs a lookup of every page: 70 ms for 4.6 GB).
    public func adviseWillNeed(_ range: Range<Int>) {
        guard let base else { return }
        var step: Int?  // read from sysfs once something is to be read
        forEachSpanNotInMemory(range) { span in
            let size = step ?? device.map(MappedFile.readaheadLimit) ?? MappedFile.smallestReadahead
            step = size
            for at in stride(from: span.lowerBound, to: span.upperBound, by: size) {
                madvise(UnsafeMutableRawPointer(mutating: base + at), min(size, span.upperBound - at), MADV_WILLNEED)
            }
            return true
        }
    }

    /// Reads `range` of the file into memory for data computed with in place, and maps it, returning when it is there
    /// (run it on another thread to overlap the disk with other work): the range is advised for large folios
    /// (`MADV_HUGEPAGE`) and faulted in (`MADV_POPULATE_READ`), so a page not in memory is read with the 2 MiB around
    /// it into one folio where the file system allows (ext4, XFS). `adviseWillNeed` reads into 4 KiB pages, and every
    /// process that maps those later pays far more to map and unmap them: a full-size model's 1.5 GB of weights takes
    /// ~120 ms to fault in and ~65 ms to unmap, against ~8 and under 1 ms (Benchmarks/kernels/page_cache_folios.c,
    /// BENCHMARKS.md). (Where the hypervisor reclaims a guest's free memory, as on this project's VMs, the first touch
    /// of a fresh 2 MiB folio costs more than that of a 4 KiB page: a file read once, as a digest reads it, keeps
    /// `adviseWillNeed`.) A 2 MiB span whose first, middle and last pages are in memory is taken to be there and
    /// skipped, as in `adviseWillNeed`. Before Linux 5.14 this reads nothing, and the pages are read when first touched.
    public func readIntoMemory(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let first = range.lowerBound / MappedFile.pageSize * MappedFile.pageSize
        madvise(UnsafeMutableRawPointer(mutating: base + first), range.upperBound - first, MADV_HUGEPAGE)
        forEachSpanNotInMemory(range) { span in
            madvise(UnsafeMutableRawPointer(mutating: base + span.lowerBound), span.count, MADV_POPULATE_READ) == 0
        }
    }

    /// Calls `body` with each `residencySpan` of `range` (counted from its first page) that is not in memory, until
    /// `body` returns false. A span whose first, middle and last pages are in memory is taken to be there: looking up
    /// every page costs 70 ms for 4.6 GB.
    private func forEachSpanNotInMemory(_ range: Range<Int>, _ body: (Range<Int>) -> Bool) {
        guard let base else { return }
        let page = MappedFile.pageSize
        func inMemory(_ offset: Int) -> Bool {
            var resident: UInt8 = 0
            return mincore(UnsafeMutableRawPointer(mutating: base + offset / page * page), 1, &resident) == 0 && resident & 1 != 0
        }
        var start = range.lowerBound / page * page
        while start < range.upperBound {
            let end = min(start + MappedFile.residencySpan, range.upperBound)
            if !(inMemory(start) && inMemory((start + end) / 2) && inMemory(end - 1)) {
                guard body(start..<end) else { return }
            }
            start = end
        }
    }

    /// The size of a memory page.
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Calls `body` with the mapping advised for random access (`MADV_RANDOM`, and no large folios: `readIntoMemory`
    /// advises its ranges again), then restores the default: a fault then reads the page it needs, not the readahead
    /// window or the 2 MiB around it. For reads scattered across a large file (a ZIP's local headers, one before each
    /// entry): each would otherwise read megabytes it does not need.
    public func withRandomAccess<R>(_ body: () throws -> R) rethrows -> R {
        guard let base else { return try body() }
        madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_NOHUGEPAGE)
        madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_RANDOM)
        defer { madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_NORMAL) }
        return try body()
    }

    /// The span `adviseWillNeed` and `readIntoMemory` sample (three pages) to tell whether it is in memory already.
    static let residencySpan = 2 << 20
    /// Linux's default readahead window, and the least one `MADV_WILLNEED` reads.
    static let smallestReadahead = 128 << 10

    /// The most one `MADV_WILLNEED` reads of a file on `device`: Linux caps it at the larger of the device's readahead
    /// window and its largest request (`read_ahead_kb`, `max_sectors_kb` in sysfs; a partition's are its disk's), here
    /// kept within 128 KiB … 2 MiB. 128 KiB when the file is on no block device (tmpfs, overlay). Asking in smaller
    /// steps than the cap makes more, smaller requests (slower on virtual disks); in larger ones, reads only the cap.
    static func readaheadLimit(device: UInt64) -> Int {
        let major = ((device >> 8) & 0xFFF) | ((device >> 32) & ~0xFFF), minor = (device & 0xFF) | ((device >> 12) & ~0xFF)
        let block = "/sys/dev/block/\(major):\(minor)"
        for queue in [block + "/queue", block + "/../queue"] {
            if let window = sysfsNumber(queue + "/read_ahead_kb"), let request = sysfsNumber(queue + "/max_sectors_kb") {
                return min(max(max(window, request) << 10, smallestReadahead), residencySpan)
            }
        }
        return smallestReadahead
    }

    /// The number in a small sysfs file, or nil.
    private static func sysfsNumber(_ path: String) -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 32)
        let n = read(fd, &bytes, bytes.count)
        guard n > 0 else { return nil }
        return Int(String(decoding: bytes[..<n].prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }, as: UTF8.self))
    }

    /// Drops the resident pages wholly inside `range` (they are read again from the file if touched), so
    /// streaming through a large mapping keeps resident memory bounded.
    public func discardPages(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = MappedFile.pageSize
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }
}
