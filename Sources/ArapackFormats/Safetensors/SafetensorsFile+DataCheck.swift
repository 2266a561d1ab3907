import ArapackTensor
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// One streaming pass over a safetensors file: SHA-256 of every byte and NaN/Inf counts per tensor.
extension SafetensorsFile {
    /// The result of `checkData()`.
    public struct DataCheck: Sendable {
        /// SHA-256 of the whole file, lower-case hex.
        public var sha256: String
        /// NaN/Inf counts by tensor name.
        public var nonFinite: [String: Int]
    }

    /// Reads the file once with `pread` through a bounded buffer (memory stays at `chunkSize`,
    /// whatever the file size); each chunk is hashed and scanned concurrently.
    public func checkData(chunkSize: Int = 32 << 20) throws -> DataCheck {
        // Segments in file order: the header, then each tensor cut at element boundaries.
        struct Segment { var range: Range<Int>; var tensor: Int? }
        // No segment is longer than the buffer (chunkSize rounded up to one element).
        var segments: [Segment] = []
        func cut(_ range: Range<Int>, tensor: Int?, elementSize: Int) {
            let step = max(chunkSize / elementSize * elementSize, elementSize)
            var start = range.lowerBound
            while start < range.upperBound {
                let stop = min(start + step, range.upperBound)
                segments.append(Segment(range: start..<stop, tensor: tensor))
                start = stop
            }
        }
        cut(0..<header.dataStart, tensor: nil, elementSize: 1)
        for (i, e) in header.entries.enumerated() {
            cut((header.dataStart + e.dataRange.lowerBound)..<(header.dataStart + e.dataRange.upperBound), tensor: i, elementSize: e.dtype.byteSize)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize + 8, alignment: 64)
        defer { buffer.deallocate() }
        let digest = SHA256()
        var counts = [Int](repeating: 0, count: header.entries.count)
        var index = 0
        while index < segments.count {
            // Fill the buffer with whole segments.
            let first = index
            let base = segments[index].range.lowerBound
            while index < segments.count, segments[index].range.upperBound - base <= chunkSize || index == first { index += 1 }
            let length = segments[index - 1].range.upperBound - base
            try readFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length]), at: base)
            // Each closure below touches only what it owns for the duration of concurrentPerform.
            nonisolated(unsafe) let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<length])
            nonisolated(unsafe) let hasher = digest
            let batch = Array(segments[first..<index])
            final class Partial: @unchecked Sendable { var counts: [(Int, Int)] = [] }
            let partial = Partial()
            let entries = header.entries
            DispatchQueue.concurrentPerform(iterations: 2) { part in
                if part == 0 {
                    hasher.update(chunk)
                } else {
                    for s in batch {
                        guard let t = s.tensor else { continue }
                        let bytes = UnsafeRawBufferPointer(rebasing: chunk[(s.range.lowerBound - base)..<(s.range.upperBound - base)])
                        partial.counts.append((t, NonFinite.count(bytes, dtype: entries[t].dtype)))
                    }
                }
            }
            for (t, n) in partial.counts { counts[t] += n }
        }
        return DataCheck(sha256: digest.hexDigest(),
                         nonFinite: Dictionary(uniqueKeysWithValues: zip(header.entries.map(\.name), counts)))
    }

    private func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let n = retryingOnInterrupt { pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done)) }
            guard n > 0 else { throw FileError(path: path, operation: "read", code: n == 0 ? EIO : errno) }
            done += n
        }
    }
}
