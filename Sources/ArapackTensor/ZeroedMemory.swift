#if canImport(Glibc)
import Glibc
#endif

/// Zeroed, 64-byte aligned memory owned by this object. Buffers of 4 MiB and more are an anonymous mapping of their
/// own, aligned to 2 MiB and advised for transparent huge pages: the kernel then zeroes and maps them 2 MiB at a time
/// instead of one fault per 4 KiB page (a model's weights widened to float32, 1.5 GB, fault in within 0.2 s instead
/// of 1.5–3 s on this project's VMs). Smaller ones come from the allocator.
public final class ZeroedMemory: @unchecked Sendable {
    /// The bytes: exactly `byteCount` of them (a zero count gives an empty buffer with a valid address).
    public let bytes: UnsafeMutableRawBufferPointer
    /// The whole mapping to unmap, for a mapped buffer.
    private let mapping: (base: UnsafeMutableRawPointer, length: Int)?

    static let hugePage = 2 << 20
    static let mappedFrom = 4 << 20

    public init(byteCount: Int) {
        precondition(byteCount >= 0, "negative byte count")
        if byteCount >= Self.mappedFrom,
           let raw = mmap(nil, byteCount + Self.hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED {
            let aligned = (Int(bitPattern: raw) + Self.hugePage - 1) / Self.hugePage * Self.hugePage
            let start = UnsafeMutableRawPointer(bitPattern: aligned)!
            madvise(start, byteCount, MADV_HUGEPAGE)
            mapping = (raw, byteCount + Self.hugePage)
            bytes = UnsafeMutableRawBufferPointer(start: start, count: byteCount)
        } else {
            // Too small to map (or the mapping was refused: the allocator's own failure then stops the process).
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            mapping = nil
            bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount])
        }
    }

    deinit {
        if let mapping { munmap(mapping.base, mapping.length) } else { bytes.baseAddress?.deallocate() }
    }

    /// The memory as `count` values of `T` (which must fit).
    public func bound<T>(to: T.Type, count: Int) -> UnsafeMutableBufferPointer<T> {
        precondition(count * MemoryLayout<T>.stride <= bytes.count, "buffer too small")
        return UnsafeMutableBufferPointer(start: bytes.baseAddress!.bindMemory(to: T.self, capacity: count), count: count)
    }
}
