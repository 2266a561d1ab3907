/// The bytes behind a tensor: a range of a memory-mapped file, or an owned buffer.
///
/// Mapped storage is zero-copy; owned storage is `ZeroedMemory` (64-byte aligned, huge pages when large), freed on release.
public final class TensorStorage: @unchecked Sendable {
    private enum Backing {
        case mapped(MappedFile, Range<Int>)
        case owned(ZeroedMemory)
    }

    private let backing: Backing

    /// Storage that views `range` of `file`. `range` must lie within the file (programmer error otherwise).
    public init(file: MappedFile, range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= file.count, "range outside mapped file")
        backing = .mapped(file, range)
    }

    /// Owned, zero-initialised storage of `byteCount` bytes.
    public init(byteCount: Int) {
        backing = .owned(ZeroedMemory(byteCount: byteCount))
    }

    /// Owned storage holding a copy of `bytes`.
    public convenience init<C: Collection>(copying bytes: C) where C.Element == UInt8 {
        self.init(byteCount: bytes.count)
        withUnsafeMutableBytes { dst in dst.copyBytes(from: bytes) }
    }

    /// Number of bytes.
    public var count: Int {
        switch backing {
        case let .mapped(_, range): return range.count
        case let .owned(memory): return memory.bytes.count
        }
    }

    /// Whether the bytes come from a memory map (read-only).
    public var isMapped: Bool {
        if case .mapped = backing { return true }
        return false
    }

    /// For mapped storage, drops its resident pages (see `MappedFile.discardPages`); owned storage is unchanged.
    public func discardMappedPages() {
        if case let .mapped(file, range) = backing { file.discardPages(range) }
    }

    /// For mapped storage, reads its bytes into the page cache now (see `MappedFile.readIntoMemory`); owned storage is
    /// already in memory.
    public func readIntoMemory() {
        if case let .mapped(file, range) = backing { file.readIntoMemory(range) }
    }

    /// Drops the resident pages of `bytes` (offsets within this storage) when mapped.
    public func discardMappedPages(_ bytes: Range<Int>) {
        if case let .mapped(file, range) = backing {
            file.discardPages((range.lowerBound + bytes.lowerBound)..<(range.lowerBound + min(bytes.upperBound, range.count)))
        }
    }

    /// Calls `body` with the bytes. Do not escape the pointer from the closure.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch backing {
        case let .mapped(file, range):
            return try file.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[range])) }
        case let .owned(memory):
            return try withExtendedLifetime(self) { try body(UnsafeRawBufferPointer(memory.bytes)) }
        }
    }

    /// Calls `body` with writable bytes of owned storage. Mapped storage is read-only: calling this on it
    /// is a programmer error.
    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        guard case let .owned(memory) = backing else { preconditionFailure("mapped storage is read-only") }
        return try withExtendedLifetime(self) { try body(memory.bytes) }
    }
}
