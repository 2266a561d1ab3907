import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// Why an archive could not be written or read. `file` is the archive; offsets are into its tar stream.
public enum ArchiveError: Error, Equatable, CustomStringConvertible, Sendable {
    case nameTooLong(file: String, name: String)
    case zstdContext(file: String)
    case zstd(file: String, message: String)
    case zstdTruncated(file: String)
    case tarTruncated(file: String)
    case entryAfterEnd(file: String, offset: Int)
    case badNumber(file: String, offset: Int, text: String)
    case checksum(file: String, offset: Int)
    case sizeOutOfRange(file: String, entry: String)
    case notRelative(file: String, entry: String)
    case outsideTop(file: String, entry: String, top: String)
    case unexpectedFolder(file: String, entry: String)
    case tooDeep(file: String, entry: String)
    case duplicate(file: String, entry: String)
    case tooManyEntries(file: String, limit: Int)
    case entryType(file: String, entry: String, type: UInt8)
    /// Unpacking would write more than `limit` bytes.
    case bomb(file: String, limit: Int)

    public var description: String {
        switch self {
        case let .nameTooLong(file, name): return "\(file): entry name \"\(name)\" is too long for a ustar archive"
        case let .zstdContext(file): return "\(file): zstd could not allocate a context"
        case let .zstd(file, message): return "\(file): zstd: \(message)"
        case let .zstdTruncated(file): return "\(file): the zstd stream is truncated"
        case let .tarTruncated(file): return "\(file): the tar stream ends inside an entry or without its end blocks"
        case let .entryAfterEnd(file, offset): return "\(file): tar entry at offset \(offset) after the end blocks"
        case let .badNumber(file, offset, text): return "\(file): tar header at offset \(offset): bad number \"\(text)\""
        case let .checksum(file, offset): return "\(file): tar header at offset \(offset): checksum mismatch"
        case let .sizeOutOfRange(file, entry): return "\(file): tar entry \"\(entry)\": size out of range"
        case let .notRelative(file, entry): return "\(file): tar entry \"\(entry)\" is not a plain relative path"
        case let .outsideTop(file, entry, top): return "\(file): tar entry \"\(entry)\" is outside the top folder \"\(top)\""
        case let .unexpectedFolder(file, entry): return "\(file): unexpected folder entry \"\(entry)\""
        case let .tooDeep(file, entry): return "\(file): tar entry \"\(entry)\" is nested too deep; a bundle holds files at most one folder deep"
        case let .duplicate(file, entry): return "\(file): tar entry \"\(entry)\" appears twice"
        case let .tooManyEntries(file, limit): return "\(file): more than \(limit) entries; a bundle holds a release's dozen files and its shards"
        case let .entryType(file, entry, type):
            return "\(file): tar entry \"\(entry)\" has type '\(Character(Unicode.Scalar(type)))'; only files and one folder are allowed"
        case let .bomb(file, limit):
            return "\(file): unpacks to more than \(limit) bytes (8 × the archive's size + 256 MiB): a decompression bomb? nothing was kept"
        }
    }
}

/// Deterministic release archives: a POSIX (ustar) tar of one folder, entries sorted by name, modes
/// 0755/0644, uid/gid 0, empty owner names, one fixed mtime, compressed with libzstd at a pinned level
/// (with the zstd content checksum), written atomically with a `.sha256` file beside it.
public enum ReleaseArchive {
    /// The pinned zstd level.
    public static let compressionLevel: Int32 = 3
    static let block = 512

    /// The checksum file written beside the archive at `path`: `sha256sum -c` reads it.
    public static func sidecar(of path: String) -> String { path + ".sha256" }

    /// Writes `<folder contents>` under the top folder `name/` to `path` (`…/name.tar.zst`) and
    /// `path.sha256`. `mtime` is SOURCE_DATE_EPOCH or 0. `beforeCommit` runs once archive and sidecar are
    /// complete and on disk, just before they are renamed into place (convert moves the bundle folder into
    /// place there, so an archive never exists without its bundle; a run killed between the renames leaves
    /// temporaries of the archive or sidecar, which the next run into DST removes). Returns the archive's SHA-256.
    @discardableResult
    public static func write(folder: String, files: [String], name: String, to path: String, mtime: Int,
                             replacing: Bool, progress: Progress, beforeCommit: () throws -> Void = {}) throws -> String {
        let out = try AtomicFileWriter(destination: path, hashing: true)
        let z = try ZstdWriter(out)
        let sorted = files.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        try z.write(header(name: name + "/", size: 0, mode: 0o755, directory: true, mtime: mtime, file: path))
        var total = 0
        for f in sorted { total += try fileSize(folder + "/" + f) }
        progress.begin("writing \(splitPath(path).1)", total: total)
        var folders = Set<String>()
        for f in sorted {
            // A folder inside the bundle (base_tokenizer/) gets its own entry before its first file.
            if let slash = f.firstIndex(of: "/"), folders.insert(String(f[..<slash])).inserted {
                try z.write(header(name: name + "/" + f[..<slash] + "/", size: 0, mode: 0o755, directory: true, mtime: mtime, file: path))
            }
            let file = try MappedFile(path: folder + "/" + f)
            try z.write(header(name: name + "/" + f, size: file.count, mode: 0o644, directory: false, mtime: mtime, file: path))
            try file.withUnsafeBytes { all in
                var offset = 0
                while offset < all.count {
                    let end = min(offset + (16 << 20), all.count)
                    try z.write(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
                    file.discardPages(offset..<end)
                    progress.advance(end - offset)
                    offset = end
                }
            }
            let pad = (block - file.count % block) % block
            if pad > 0 { try z.write([UInt8](repeating: 0, count: pad)) }
        }
        try z.write([UInt8](repeating: 0, count: 2 * block))
        try z.finish()
        // Archive and sidecar are on disk before the bundle moves into place: the three are only renames apart.
        try out.sync()
        let digest = out.sha256!
        let side = try AtomicFileWriter(destination: sidecar(of: path), bufferSize: 4096)
        try side.write("\(digest)  \(splitPath(path).1)\n")
        try side.sync()
        try beforeCommit()
        try out.commit(replacing: replacing)
        try side.commit(replacing: true)
        progress.end()
        return digest
    }

    /// A ustar header block. Sizes of 8 GiB and more use the base-256 form GNU tar and Python read.
    static func header(name: String, size: Int, mode: Int, directory: Bool, mtime: Int, file: String) throws -> [UInt8] {
        var h = [UInt8](repeating: 0, count: block)
        let bytes = Array(name.utf8)
        // Names longer than 100 bytes split at a slash into prefix (155) and name (100).
        var prefix: [UInt8] = [], rest = bytes
        if bytes.count > 100 {
            guard let cut = bytes.indices.reversed().first(where: { bytes[$0] == UInt8(ascii: "/") && $0 <= 155 && bytes.count - $0 - 1 <= 100 }) else {
                throw ArchiveError.nameTooLong(file: file, name: name)
            }
            prefix = Array(bytes[..<cut])
            rest = Array(bytes[(cut + 1)...])
        }
        func put(_ field: [UInt8], at offset: Int) { for (i, b) in field.enumerated() { h[offset + i] = b } }
        func octal(_ v: Int, width: Int) -> [UInt8] {
            let s = String(v, radix: 8)
            return Array((String(repeating: "0", count: max(0, width - 1 - s.count)) + s).utf8) + [0]
        }
        put(rest, at: 0)
        put(octal(mode, width: 8), at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        if size < 0o77777777777 {
            put(octal(size, width: 12), at: 124)
        } else {
            var v = UInt64(size)
            for i in stride(from: 135, through: 125, by: -1) { h[i] = UInt8(v & 0xFF); v >>= 8 }
            h[124] = 0x80
        }
        put(octal(mtime, width: 12), at: 136)
        h[156] = directory ? UInt8(ascii: "5") : UInt8(ascii: "0")
        put(Array("ustar".utf8) + [0], at: 257)
        put(Array("00".utf8), at: 263)
        put(prefix, at: 345)
        // The checksum counts its own field as spaces.
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(octal(sum, width: 7) + [UInt8(ascii: " ")], at: 148)
        return h
    }
}

/// Streams bytes through a zstd compression context into an atomic file.
final class ZstdWriter {
    private let out: AtomicFileWriter
    private let context: OpaquePointer
    private var buffer: [UInt8]

    init(_ out: AtomicFileWriter) throws {
        self.out = out
        guard let c = ZSTD_createCCtx() else { throw ArchiveError.zstdContext(file: out.destination) }
        context = c
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, ReleaseArchive.compressionLevel)
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1)
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

/// A ustar parser fed arbitrary chunks (what `ArchiveReader` runs on the decompressed stream).
public struct TarParser {
    let file: String
    let visitor: ArchiveReader.Visitor
    private var header: [UInt8] = []
    private var remaining = 0
    private var padding = 0
    private var inEntry = false
    private var zeroBlocks = 0
    private var top: String?
    private var names = Set<String>()
    private var offset = 0

    private static let zeros = [UInt8](repeating: 0, count: 1 << 16)

    public init(file: String, visitor: ArchiveReader.Visitor) {
        self.file = file
        self.visitor = visitor
    }

    public mutating func feed(_ chunk: UnsafeRawBufferPointer) throws {
        var i = 0
        while i < chunk.count {
            if zeroBlocks >= 2 {
                // After the end-of-archive marker only zero padding may follow; checked a buffer at a time.
                let n = min(Self.zeros.count, chunk.count - i)
                guard memcmp(chunk.baseAddress! + i, Self.zeros, n) == 0 else { throw ArchiveError.entryAfterEnd(file: file, offset: offset) }
                i += n
                offset += n
            } else if inEntry && remaining > 0 {
                let n = min(remaining, chunk.count - i)
                try visitor.data(UnsafeRawBufferPointer(rebasing: chunk[i..<(i + n)]))
                remaining -= n
                i += n
                offset += n
                if remaining == 0 {
                    try visitor.end()
                    inEntry = false
                }
            } else if padding > 0 {
                let n = min(padding, chunk.count - i)
                padding -= n
                i += n
                offset += n
            } else {
                let n = min(ReleaseArchive.block - header.count, chunk.count - i)
                header += chunk[i..<(i + n)]
                i += n
                offset += n
                if header.count == ReleaseArchive.block {
                    try parseHeader()
                    header = []
                }
            }
        }
    }

    public mutating func finish() throws -> String {
        guard !inEntry, header.isEmpty, zeroBlocks >= 1, let top else {
            throw ArchiveError.tarTruncated(file: file)
        }
        return top
    }

    private mutating func parseHeader() throws {
        let at = offset - ReleaseArchive.block
        if header.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            return
        }
        guard zeroBlocks == 0 else { throw ArchiveError.entryAfterEnd(file: file, offset: at) }
        func text(_ r: Range<Int>) -> String { String(decoding: header[r].prefix { $0 != 0 }, as: UTF8.self) }
        func octal(_ r: Range<Int>) throws -> Int {
            let s = text(r).trimmingSpaces
            guard let v = Int(s.isEmpty ? "0" : s, radix: 8), v >= 0 else {
                throw ArchiveError.badNumber(file: file, offset: at, text: s)
            }
            return v
        }
        var sum = 0
        for (i, b) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
        guard try octal(148..<156) == sum else { throw ArchiveError.checksum(file: file, offset: at) }
        let prefix = text(345..<500)
        let name = prefix.isEmpty ? text(0..<100) : prefix + "/" + text(0..<100)
        let size: Int
        if header[124] & 0x80 != 0 {
            var v = 0
            for i in 125..<136 {
                guard v < (Int.max >> 8) else { throw ArchiveError.sizeOutOfRange(file: file, entry: name) }
                v = v << 8 | Int(header[i])
            }
            size = v
        } else {
            size = try octal(124..<136)
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        guard !name.hasPrefix("/"), !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else {
            throw ArchiveError.notRelative(file: file, entry: name)
        }
        if top == nil { top = String(parts[0]) }
        guard parts[0] == top! else { throw ArchiveError.outsideTop(file: file, entry: name, top: top!) }
        let type = header[156]
        switch type {
        case UInt8(ascii: "5"):
            guard size == 0, parts.count <= 2 else { throw ArchiveError.unexpectedFolder(file: file, entry: name) }
        case UInt8(ascii: "0"), 0:
            guard parts.count == 2 || parts.count == 3 else {
                throw ArchiveError.tooDeep(file: file, entry: name)
            }
            let inside = parts.dropFirst().joined(separator: "/")
            guard names.insert(inside).inserted else { throw ArchiveError.duplicate(file: file, entry: name) }
            guard names.count <= BundleFolder.maximumFiles else { throw ArchiveError.tooManyEntries(file: file, limit: BundleFolder.maximumFiles) }
            try visitor.begin(name: inside, size: size)
            inEntry = true
            remaining = size
            padding = (ReleaseArchive.block - size % ReleaseArchive.block) % ReleaseArchive.block
            if size == 0 {
                try visitor.end()
                inEntry = false
            }
        default:
            throw ArchiveError.entryType(file: file, entry: name, type: type)
        }
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}

/// A release archive unpacked into a private temporary folder (under `TMPDIR`, default /tmp) so it can be
/// read like a bundle folder; removed when released or when the process is interrupted.
public final class ExtractedArchive {
    /// The bundle folder inside the temporary folder.
    public let bundle: String
    private let root: String

    public init(_ path: String) throws {
        let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        // The folder's name carries the pid, so a killed run's unpacked bundle is removed by the next one.
        TemporaryFiles.removeStale(in: base, prefix: "arapack-extract-")
        var template = Array((base + "/arapack-extract-\(getpid())-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw FileError(path: base, operation: "mkdtemp", code: errno)
        }
        root = String(cString: made)
        TemporaryFiles.register(root)
        final class Writer: ArchiveReader.Visitor {
            let folder: String, archive: String, limit: Int
            var out: AtomicFileWriter?
            var total = 0
            init(_ folder: String, archive: String, limit: Int) {
                self.folder = folder
                self.archive = archive
                self.limit = limit
            }
            func begin(name: String, size: Int) throws {
                // Refused before a byte is written when the header already says so, else as the bytes come.
                guard size <= limit - total else { throw ExtractedArchive.bomb(archive, limit) }
                if let slash = name.firstIndex(of: "/") {  // the reader allows one folder level (base_tokenizer/)
                    let sub = folder + "/" + name[..<slash]
                    guard mkdir(sub, 0o700) == 0 || errno == EEXIST else { throw FileError(path: sub, operation: "mkdir", code: errno) }
                }
                out = try AtomicFileWriter(destination: folder + "/" + name)
            }
            func data(_ bytes: UnsafeRawBufferPointer) throws {
                total += bytes.count  // (the reader refuses the stream past the limit)
                try out!.write(bytes)
            }
            func end() throws { try out!.commit(replacing: false); out = nil }
        }
        let writer = Writer(root, archive: path, limit: ArchiveReader.expansionLimit(archiveSize: try fileSize(path)))
        do {
            try ArchiveReader.read(path, visitor: writer)  // the bundle's files land in root
            bundle = root
        } catch {
            removeTree(root)
            TemporaryFiles.unregister(root)
            throw error
        }
    }

    deinit {
        removeTree(root)
        TemporaryFiles.unregister(root)
    }

    static func bomb(_ archive: String, _ limit: Int) -> ArchiveError {
        ArchiveError.bomb(file: archive, limit: limit)
    }
}
