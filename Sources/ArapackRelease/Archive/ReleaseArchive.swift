import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic release archives: a POSIX (ustar) tar of one folder, entries sorted by name, modes
/// 0755/0644, uid/gid 0, empty owner names, one fixed mtime, compressed with libzstd at a pinned level
/// (with the zstd content checksum), written atomically with a `.sha256` file beside it.
public enum ReleaseArchive {
    /// The pinned zstd level: on a release's weights, level 1 is as small as 3 (a bf16 381M bundle: 583.1 MB at 1,
    /// 583.7 MB at 3) in half the time.
    public static let compressionLevel: Int32 = 1
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
        // Direct: nothing reads the archive back, and its pages would only cost a copy into fresh page cache.
        let out = try AtomicFileWriter(destination: path, hashing: true, direct: true)
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
