#if canImport(Glibc)
import Glibc
#endif

/// Zeroed, 64-byte aligned memory owned by this object. Buffers of 4 MiB and more are an anonymous mapping of their
/// own, aligned to 2 MiB and advised for transparent huge pages: the kernel then zeroes and maps them 2 MiB at a time
/// instead of one fault per 4 KiB page (a model's weights widened to float32, 1.5 GB, fault in within 0.2 s instead
/// of 1.5–3 s on this project's VMs). Smaller ones come from the allocator.
///
/// A run that builds one model after another (release: each form's weights for its parity pass) may keep freed
/// mappings for the next model (`reusingFreedMappings`): a reused mapping is zeroed again by `memset`, which on a VM
/// costs a tenth of fresh pages (the host backs those a fault at a time). Kept mappings never raise the most memory
/// the buffers have held at once: before a new mapping is made, kept ones are unmapped until the buffers in use, the
/// kept ones and the new one fit within that high-water mark.
public final class ZeroedMemory: @unchecked Sendable {
    /// The bytes: exactly `byteCount` of them (a zero count gives an empty buffer with a valid address).
    public let bytes: UnsafeMutableRawBufferPointer
    /// The whole mapping to unmap, for a mapped buffer.
    private let mapping: Mapping?

    static let hugePage = 2 << 20
    static let mappedFrom = 4 << 20

    public init(byteCount: Int) {
        precondition(byteCount >= 0, "negative byte count")
        if byteCount >= Self.mappedFrom, let mapping = FreedMappings.shared.obtain(byteCount) {
            self.mapping = mapping
            bytes = UnsafeMutableRawBufferPointer(start: mapping.start, count: byteCount)
        } else {
            // Too small to map (or the mapping was refused: the allocator's own failure then stops the process).
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            mapping = nil
            bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<byteCount])
        }
    }

    deinit {
        if let mapping { FreedMappings.shared.give(mapping) } else { bytes.baseAddress?.deallocate() }
    }

    /// The memory as `count` values of `T` (which must fit).
    public func bound<T>(to: T.Type, count: Int) -> UnsafeMutableBufferPointer<T> {
        precondition(count * MemoryLayout<T>.stride <= bytes.count, "buffer too small")
        return UnsafeMutableBufferPointer(start: bytes.baseAddress!.bindMemory(to: T.self, capacity: count), count: count)
    }

    /// Runs `body` keeping the mappings freed during it for buffers asked for later in it (one no more than twice the
    /// size of the request plus a huge page, zeroed again); they are unmapped when `body` returns. Not nested.
    public static func reusingFreedMappings<R>(_ body: () throws -> R) rethrows -> R {
        FreedMappings.shared.setKeeping(true)
        defer { FreedMappings.shared.setKeeping(false) }
        return try body()
    }

    /// The freed mappings kept now (for tests).
    static var keptMappings: Int { FreedMappings.shared.count }

    /// Bytes of mappings in use, kept, and the most of both at once (for tests).
    static var accounting: (inUse: Int, kept: Int, highWater: Int) { FreedMappings.shared.accounting }

    /// An anonymous mapping with room for a 2 MiB-aligned buffer of `capacity` bytes.
    final class Mapping: @unchecked Sendable {
        let base: UnsafeMutableRawPointer, length: Int, start: UnsafeMutableRawPointer, capacity: Int

        init?(_ byteCount: Int) {
            guard let raw = mmap(nil, byteCount + ZeroedMemory.hugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  raw != MAP_FAILED else { return nil }
            let aligned = (Int(bitPattern: raw) + ZeroedMemory.hugePage - 1) / ZeroedMemory.hugePage * ZeroedMemory.hugePage
            (base, length, start) = (raw, byteCount + ZeroedMemory.hugePage, UnsafeMutableRawPointer(bitPattern: aligned)!)
            capacity = length - (aligned - Int(bitPattern: raw))
            madvise(start, capacity, MADV_HUGEPAGE)
        }

        deinit { munmap(base, length) }
    }
}

/// Every mapped buffer's pages: those in use, and the freed ones a run keeps (`ZeroedMemory.reusingFreedMappings`).
private final class FreedMappings: @unchecked Sendable {
    static let shared = FreedMappings()
    private let lock = NSLockLike()
    private var keeping = false
    private var kept: [ZeroedMemory.Mapping] = []
    /// Bytes of mappings in use, of kept ones, and the most in use and kept at once.
    private var inUse = 0, keptBytes = 0, highWater = 0

    var count: Int { lock.withLock { kept.count } }
    var accounting: (inUse: Int, kept: Int, highWater: Int) { lock.withLock { (inUse, keptBytes, highWater) } }

    func setKeeping(_ on: Bool) {
        let dropped = lock.withLock { () -> [ZeroedMemory.Mapping] in
            keeping = on
            guard !on else { return [] }
            defer { (kept, keptBytes) = ([], 0) }
            return kept
        }
        _ = dropped  // unmapped here, outside the lock
    }

    /// A mapping for `byteCount` bytes, zeroed: the smallest kept one that fits without wasting more than its size
    /// again, else a new one (after unmapping kept ones that would raise the high-water mark).
    func obtain(_ byteCount: Int) -> ZeroedMemory.Mapping? {
        var dropped: [ZeroedMemory.Mapping] = []
        let reused = lock.withLock { () -> ZeroedMemory.Mapping? in
            let fitting = kept.indices.filter { kept[$0].capacity >= byteCount && kept[$0].capacity <= 2 * byteCount + ZeroedMemory.hugePage }
            if let best = fitting.min(by: { kept[$0].capacity < kept[$1].capacity }) {
                let mapping = kept.remove(at: best)
                keptBytes -= mapping.length
                inUse += mapping.length
                return mapping
            }
            kept.sort { $0.length < $1.length }
            while let largest = kept.last, inUse + keptBytes + byteCount + ZeroedMemory.hugePage > highWater {
                dropped.append(kept.removeLast())
                keptBytes -= largest.length
            }
            return nil
        }
        dropped = []
        if let reused {
            // The pages past the buffer go back (they would stay resident, unused); the buffer's own are zeroed.
            let used = (byteCount + 4095) / 4096 * 4096
            if used < reused.capacity { madvise(reused.start + used, reused.capacity - used, MADV_DONTNEED) }
            memset(reused.start, 0, byteCount)
            return reused
        }
        guard let fresh = ZeroedMemory.Mapping(byteCount) else { return nil }
        lock.withLock {
            inUse += fresh.length
            highWater = max(highWater, inUse + keptBytes)
        }
        return fresh
    }

    /// Keeps `mapping` while a run asks for it; otherwise it is unmapped as the last reference goes.
    func give(_ mapping: ZeroedMemory.Mapping) {
        lock.withLock {
            inUse -= mapping.length
            if keeping {
                kept.append(mapping)
                keptBytes += mapping.length
            }
        }
    }
}
