import ArapackFormats
import ArapackModel
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// Streams bytes through a zstd compression context into an atomic file, compressed by zstd's worker threads (one per
/// thread of a forward pass, `ForwardPass.defaultThreads`). zstd's multi-threaded frames are the same bytes whatever
/// the number of workers (≥ 1), so the archive depends on its contents only; they differ from zstd's single-threaded
/// mode, which arapack therefore never uses.
final class ZstdWriter {
    private let out: AtomicFileWriter
    private let context: OpaquePointer
    private var buffer: [UInt8]
    /// The input each worker compresses at a time, pinned (level 1 would take 2 MiB; jobs of 8 MiB are as small and
    /// compress ~15 % faster on a release's weights). Part of what the archive's bytes depend on.
    static let jobSize: Int32 = 8 << 20

    init(_ out: AtomicFileWriter, workers: Int = ForwardPass.defaultThreads) throws {
        self.out = out
        guard let c = ZSTD_createCCtx() else { throw ArchiveError.zstdContext(file: out.destination) }
        context = c
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, ReleaseArchive.compressionLevel)
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)
        ZSTD_CCtx_setParameter(c, ZSTD_c_jobSize, ZstdWriter.jobSize)
        guard ZSTD_isError(ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, Int32(min(max(workers, 1), 64)))) == 0 else {
            ZSTD_freeCCtx(c)
            throw ArchiveError.zstd(file: out.destination, message: "this libzstd has no worker threads (built without ZSTD_MULTITHREAD); arapack's archives are zstd's multi-threaded frames")
        }
        buffer = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
    }

    deinit { ZSTD_freeCCtx(context) }

    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while input.pos < input.size { _ = try step(&input, ZSTD_e_continue) }
    }

    func finish() throws {
        var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
        while try step(&input, ZSTD_e_end) != 0 {}
    }

    private func step(_ input: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective) throws -> Int {
        let count = buffer.count
        let (left, produced) = buffer.withUnsafeMutableBytes { b -> (Int, Int) in
            var output = ZSTD_outBuffer(dst: b.baseAddress, size: count, pos: 0)
            let r = ZSTD_compressStream2(context, &output, &input, mode)
            return (r, output.pos)
        }
        if ZSTD_isError(left) != 0 {
            throw ArchiveError.zstd(file: out.destination, message: String(cString: ZSTD_getErrorName(left)))
        }
        try buffer.withUnsafeBytes { try out.write(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) }
        return left
    }
}
