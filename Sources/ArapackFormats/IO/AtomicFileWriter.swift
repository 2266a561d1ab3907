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
///
/// Small writes fill a buffer; a full buffer is hashed and handed to the kernel on another thread while the caller
/// fills the second buffer (what it writes is usually computed: cast, quantized, compressed), in order, so the file
/// and its digest are what one thread would have made. A failure there is thrown by the next call. The last buffer
/// is written by `sync()` on the caller's thread (a file smaller than a buffer never leaves it).
///
/// A file nothing reads back soon (a release archive) can be written `direct`ly: whole buffers go from memory to the
/// disk with `O_DIRECT`, past the page cache, instead of being copied into fresh page-cache pages (which costs a
/// virtual machine a core for a second per GB); the last partial buffer goes through the page cache. A file system
/// that refuses `O_DIRECT` gets ordinary writes. The bytes are the same either way.
public final class AtomicFileWriter: @unchecked Sendable {
    /// The final path.
    public let destination: String
    /// The temporary path being written.
    public let temporaryPath: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    /// The buffer being written on the flushing thread (swapped with `buffer` at each flush).
    private var spare: UnsafeMutableRawBufferPointer
    private var buffered = 0
    /// The flush running on another thread, and how it failed.
    private let flushing = DispatchGroup()
    private var flushFailure: Error?
    private var committed = false
    /// Set by `sync()`: the file is complete.
    private var finished = false
    /// Bytes written so far.
    public private(set) var bytesWritten = 0
    /// SHA-256 of everything written, when created with `hashing`.
    private let digest: SHA256?
    /// The file was opened with O_DIRECT: whole buffers go to the disk directly (O_DIRECT is cleared for the file's
    /// last partial buffer, or when the file system refuses an O_DIRECT write).
    public let writesDirectly: Bool
    /// Each of the two buffers' size unless the caller asks for another (one fills while the other is written).
    public static let defaultBufferSize = 8 << 20
    /// The alignment of O_DIRECT's buffers, sizes and offsets (at least any file system's logical block).
    private static let directAlignment = 4096
    /// The lower-case hex SHA-256 of the file, set by `sync()` (or `commit()`) when created with `hashing`.
    public private(set) var sha256: String?

    /// Creates the temporary file next to `destination`.
    /// With `hashing`, the SHA-256 of the bytes is computed as they are written (`sha256` after commit); with
    /// `direct`, whole buffers bypass the page cache (see above; `bufferSize` is then a multiple of 4096).
    public init(destination: String, bufferSize: Int = AtomicFileWriter.defaultBufferSize, hashing: Bool = false, direct: Bool = false) throws {
        precondition(!direct || bufferSize % Self.directAlignment == 0, "a direct writer's buffer is a multiple of 4096 bytes")
        self.destination = destination
        digest = hashing ? SHA256() : nil
        temporaryPath = temporarySibling(of: destination)
        TemporaryFiles.register(temporaryPath)  // before it exists: an interrupt in between still removes it
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
        fd = open(temporaryPath, flags | (direct ? arapack_o_direct() : 0), 0o644)
        if fd < 0, direct, errno == EINVAL {
            // The file system refuses O_DIRECT (the file may exist already: it is this writer's own name).
            unlink(temporaryPath)
            fd = open(temporaryPath, flags, 0o644)
        }
        guard fd >= 0 else {
            let code = errno
            TemporaryFiles.unregister(temporaryPath)
            throw FileError(path: temporaryPath, operation: "create", code: code)
        }
        writesDirectly = direct && fcntl(fd, F_GETFL) & arapack_o_direct() != 0
        buffer = .allocate(byteCount: bufferSize, alignment: Self.directAlignment)
        spare = .allocate(byteCount: bufferSize, alignment: Self.directAlignment)
    }

    deinit {
        flushing.wait()
        buffer.deallocate()
        spare.deallocate()
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
        TemporaryFiles.unregister(temporaryPath)
    }

    /// Appends `bytes`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(!finished, "write after sync() to \(temporaryPath)")
        if writesDirectly {
            // Only whole buffers go to the disk directly: fill the buffer to the brim before each flush.
            var done = 0
            while done < bytes.count {
                let n = min(bytes.count - done, buffer.count - buffered)
                UnsafeMutableRawBufferPointer(rebasing: buffer[buffered..<(buffered + n)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)]))
                buffered += n
                done += n
                if buffered == buffer.count { try flush() }
            }
        } else if bytes.count >= buffer.count {
            try flush()
            try waitForFlush()
            if let digest {
                // Hash on one core while the kernel copies the same (read-only) bytes on the other.
                nonisolated(unsafe) let shared = bytes
                nonisolated(unsafe) var failure: Error?
                let writer = self
                nonisolated(unsafe) let hasher = digest
                DispatchQueue.concurrentPerform(iterations: 2) { part in
                    if part == 0 { hasher.update(shared) } else { do { try writer.writeAll(shared) } catch { failure = error } }
                }
                if let failure { throw failure }
            } else {
                try writeAll(bytes)
            }
        } else {
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
        try waitForFlush()
        // The last partial buffer through the page cache (O_DIRECT takes whole blocks only).
        if writesDirectly, buffered % Self.directAlignment != 0 { try stopWritingDirectly() }
        // The last buffer is hashed and written on this thread: handing it to another only to wait for it costs a
        // thread's wake-up for every small file (a bundle's JSON files, a card) and leaves nothing to overlap.
        let last = UnsafeRawBufferPointer(rebasing: buffer[0..<buffered])
        buffered = 0
        digest?.update(last)
        try writeAll(last)
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

    /// Hands the buffered bytes to the flushing thread (once the previous flush is done) and takes the other buffer.
    private func flush() throws {
        guard buffered > 0 else { return }
        try waitForFlush()
        swap(&buffer, &spare)
        nonisolated(unsafe) let full = UnsafeRawBufferPointer(rebasing: spare[0..<buffered])
        buffered = 0
        flushing.enter()
        DispatchQueue.global().async { [self] in
            digest?.update(full)
            do { try writeAll(full) } catch { flushFailure = error }
            flushing.leave()
        }
    }

    /// Waits for the flush on the other thread, and throws its failure.
    private func waitForFlush() throws {
        flushing.wait()
        if let failure = flushFailure {
            flushFailure = nil
            throw failure
        }
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
            if n < 0, errno == EINVAL, fcntl(fd, F_GETFL) & arapack_o_direct() != 0 {
                // A file system that opened with O_DIRECT and refuses its writes: the page cache, from here on.
                try stopWritingDirectly()
                continue
            }
            guard n >= 0 else { throw FileError(path: temporaryPath, operation: "write", code: errno) }
            done += n
            writtenToFile += n
        }
    }

    /// Clears O_DIRECT: every later write goes through the page cache.
    private func stopWritingDirectly() throws {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~arapack_o_direct()) == 0 else {
            throw FileError(path: temporaryPath, operation: "fcntl (clear O_DIRECT)", code: errno)
        }
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
