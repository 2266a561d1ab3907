import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// Reads a `.tar.zst` release archive as a stream, without unpacking it to disk: every entry is passed
/// to a visitor chunk by chunk. Names must stay under one top folder with no `..` or absolute parts;
/// only regular files and folders are accepted; header checksums, sizes and zstd's checksum are checked.
public enum ArchiveReader {
    /// Called for each file entry: `begin(name, size)`, then `data` per chunk, then `end()`.
    public protocol Visitor: AnyObject {
        func begin(name: String, size: Int) throws
        func data(_ bytes: UnsafeRawBufferPointer) throws
        func end() throws
    }

    /// Walks the archive at `path`; returns the top folder name.
    @discardableResult
    public static func read(_ path: String, visitor: Visitor) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        guard let dctx = ZSTD_createDCtx() else { throw ArchiveError.zstdContext(file: path) }
        defer { ZSTD_freeDCtx(dctx) }
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27)
        var parser = TarParser(file: path, visitor: visitor)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, operation: "fstat", code: errno) }
        let limit = expansionLimit(archiveSize: Int(st.st_size))
        var unpacked = 0
        let inSize = ZSTD_DStreamInSize(), outSize = ZSTD_DStreamOutSize()
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: inSize, alignment: 64)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outSize, alignment: 64)
        defer { input.deallocate(); output.deallocate() }
        var lastResult = 0
        var sawInput = false
        while true {
            let n = retryingOnInterrupt { Glibc.read(fd, input.baseAddress, inSize) }
            guard n >= 0 else { throw FileError(path: path, operation: "read", code: errno) }
            if n == 0 { break }
            sawInput = true
            var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: n, pos: 0)
            while inBuf.pos < inBuf.size {
                var outBuf = ZSTD_outBuffer(dst: output.baseAddress, size: outSize, pos: 0)
                lastResult = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
                if ZSTD_isError(lastResult) != 0 {
                    throw ArchiveError.zstd(file: path, message: String(cString: ZSTD_getErrorName(lastResult)))
                }
                unpacked += outBuf.pos
                guard unpacked <= limit else { throw ArchiveError.bomb(file: path, limit: limit) }
                try parser.feed(UnsafeRawBufferPointer(rebasing: output[0..<outBuf.pos]))
            }
        }
        guard sawInput, lastResult == 0 else { throw ArchiveError.zstdTruncated(file: path) }
        return try parser.finish()
    }

    /// What an archive may unpack to: 8 × its own size + 256 MiB. Weights barely compress (zstd saves 5-25%
    /// on them), so a stream that expands further (a frame of RLE blocks turns 4 bytes into 128 KiB) is refused
    /// as a decompression bomb as it is read, before TMPDIR fills or the CPU spends minutes on it.
    static func expansionLimit(archiveSize: Int) -> Int {
        archiveSize > (Int.max - (256 << 20)) / 8 ? Int.max : 8 * archiveSize + (256 << 20)
    }
}
