import ArapackTensor

/// A zip archive read through a memory map, as `torch.save` and DCP items write them.
///
/// The central directory (ZIP64 included) is parsed and checked on open: every entry's local header
/// must match its central record and its data must lie inside the file. STORED entries are served
/// zero-copy; DEFLATE entries are inflated under a size cap. Names are checked: no absolute paths,
/// no `..`.
public final class ZipArchive {
    /// The most all DEFLATE entries of one archive may inflate to, together (each entry is also held to it).
    public static let defaultInflateLimit = 1 << 30

    /// What the DEFLATE entries of an archive of `size` bytes may inflate to by default: sixteen times its size
    /// (tensor bytes barely compress; torch.save stores them uncompressed), at least 64 MiB, at most
    /// `defaultInflateLimit`. So a small file cannot cost much: a 1.4 MB zip of eight 160 MiB DEFLATE storages was
    /// read to its 1 GiB budget in 400 MiB (issue 27); it now stops at 64 MiB.
    public static func inflateBudget(archiveSize size: Int) -> Int {
        min(defaultInflateLimit, max(64 << 20, size.multipliedReportingOverflow(by: 16).overflow ? Int.max : size * 16))
    }

    /// One entry.
    public struct Entry: Sendable {
        public var name: String
        public var method: UInt16
        public var crc32: UInt32
        public var compressedSize: Int
        public var size: Int
        /// Where the entry's (possibly compressed) bytes begin in the file.
        public var dataOffset: Int
    }

    /// The mapped file.
    public let file: MappedFile
    /// Where the archive begins inside `file` (non-zero for a zip embedded in a larger file).
    public let base: Int
    /// Bytes of the archive.
    public let length: Int
    /// Entries in central-directory order.
    public let entries: [Entry]
    private let byName: [String: Int]
    private let inflateLimit: Int
    /// A label for error messages (file path, or path plus offset).
    public let label: String
    /// Guards the inflate budget (DEFLATE entries only; STORED entries are served without it).
    private let readLock = NSLockLike()
    /// DEFLATE entries inflated so far, each counted once, against `inflateLimit` for the whole archive.
    nonisolated(unsafe) private var charged = Set<String>()
    nonisolated(unsafe) private var inflatedTotal = 0

    /// Opens the archive filling `file` (or `range` of it), validating its directory.
    /// `inflateLimit` caps what its DEFLATE entries inflate to together (default: `inflateBudget(archiveSize:)`).
    public init(file: MappedFile, range: Range<Int>? = nil, label: String? = nil, inflateLimit: Int? = nil) throws {
        let r = range ?? 0..<file.count
        self.file = file
        self.base = r.lowerBound
        self.length = r.count
        self.inflateLimit = inflateLimit ?? Self.inflateBudget(archiveSize: r.count)
        let name = label ?? file.path
        self.label = name
        // The local headers lie one before each entry, all through the file: each is read by itself, not with the
        // readahead window around it (a cold 4.6 GB training checkpoint read 1.3 GB of optimizer state for them).
        let parsed = try file.withRandomAccess {
            try file.withUnsafeBytes { all in try ZipArchive.readDirectory(UnsafeRawBufferPointer(rebasing: all[r]), label: name) }
        }
        var index: [String: Int] = [:]
        var folded: [String: String] = [:]
        for (i, e) in parsed.enumerated() {
            guard index.updateValue(i, forKey: e.name) == nil else {
                throw ZipError.malformed(file: name, offset: e.dataOffset, detail: "entry \(e.name.escapingControlCharacters) appears twice")
            }
            // PyTorch's reader can resolve a name to another entry that differs only in ASCII case: both are refused.
            let key = String(decoding: e.name.utf8.map { (65...90).contains($0) ? $0 + 32 : $0 }, as: UTF8.self)
            if let other = folded.updateValue(e.name, forKey: key) {
                throw ZipError.malformed(file: name, offset: e.dataOffset,
                                         detail: "entries \(other.escapingControlCharacters) and \(e.name.escapingControlCharacters) differ only in letter case (another reader may take one for the other)")
            }
        }
        entries = parsed
        byName = index
    }

    /// Opens the archive at `path`.
    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    /// The entry called `name`, or nil.
    public func entry(named name: String) -> Entry? { byName[name].map { entries[$0] } }

    /// The bytes of `name` as storage: a zero-copy view for STORED entries, an inflated copy for DEFLATE.
    public func storage(of name: String) throws -> TensorStorage {
        guard let e = entry(named: name) else { throw ZipError.entryNotFound(file: label, entry: name) }
        let start = base + e.dataOffset
        if e.method == 0 { return TensorStorage(file: file, range: start..<(start + e.size)) }
        // One budget for the whole archive: many entries each under the per-entry cap must not add up to gigabytes.
        let withinBudget = readLock.withLock { () -> Bool in
            guard !charged.contains(name) else { return true }
            guard e.size <= inflateLimit - inflatedTotal else { return false }
            charged.insert(name)
            inflatedTotal += e.size
            return true
        }
        guard withinBudget else { throw ZipError.archiveExpansionLimit(file: label, entry: name, limit: inflateLimit) }
        let inflated: [UInt8]
        do {
            inflated = try file.withUnsafeBytes { all in
                try Inflate.inflate(UnsafeRawBufferPointer(rebasing: all[start..<(start + e.compressedSize)]), limit: min(e.size, inflateLimit))
            }
        } catch let f as Inflate.Failure {
            if f.detail == "limit" { throw ZipError.expansionLimit(file: label, entry: name, limit: min(e.size, inflateLimit)) }
            throw ZipError.unsupported(file: label, entry: name, detail: "DEFLATE data is corrupt: \(f.detail)")
        }
        guard inflated.count == e.size else {
            throw ZipError.unsupported(file: label, entry: name, detail: "inflated to \(inflated.count) bytes, the directory says \(e.size)")
        }
        let crc = inflated.withUnsafeBytes { CRC32.checksum($0) }
        guard crc == e.crc32 else { throw ZipError.checksumMismatch(file: label, entry: name, expected: e.crc32, found: crc) }
        return TensorStorage(copying: inflated)
    }

    /// The bytes of `name` as an array (for small entries such as `data.pkl` or `byteorder`).
    public func bytes(of name: String) throws -> [UInt8] {
        try storage(of: name).withUnsafeBytes { Array($0) }
    }

    /// Recomputes the CRC-32 of `name` and compares it with the directory.
    public func verifyChecksum(of name: String) throws {
        guard let e = entry(named: name) else { throw ZipError.entryNotFound(file: label, entry: name) }
        let crc = try storage(of: name).withUnsafeBytes { CRC32.checksum($0) }
        guard crc == e.crc32 else { throw ZipError.checksumMismatch(file: label, entry: name, expected: e.crc32, found: crc) }
    }

    // MARK: directory parsing

    /// Little-endian fields of the archive's bytes; a 64-bit field past Int.max is malformed.
    private struct Fields {
        let z: UnsafeRawBufferPointer
        let label: String
        func u16(_ o: Int) -> Int { Int(UInt16(littleEndian: z.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: z.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) throws -> Int {
            let v = UInt64(littleEndian: z.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            guard v <= UInt64(Int.max) else { throw ZipError.malformed(file: label, offset: o, detail: "64-bit field too large") }
            return Int(v)
        }
    }

    private static func readDirectory(_ z: UnsafeRawBufferPointer, label: String) throws -> [Entry] {
        let f = Fields(z: z, label: label)
        let (count, cdOffset, cdEnd) = try centralDirectory(f)
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var p = cdOffset
        for _ in 0..<count {
            let (entry, recordEnd) = try centralEntry(f, at: p, directoryEnd: cdEnd)
            entries.append(entry)
            p = recordEnd
        }
        return entries
    }

    /// The entry count and the central directory's extent, from the end-of-central-directory record (ZIP64's when
    /// its locator precedes it), checked to lie inside the file and to have room for the entries.
    private static func centralDirectory(_ f: Fields) throws -> (count: Int, offset: Int, end: Int) {
        let (z, label) = (f.z, f.label)
        guard z.count >= 22 else { throw ZipError.notAZip(file: label, detail: "\(z.count) bytes is too short") }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        var eocd = -1
        var o = z.count - 22
        let lowest = max(0, z.count - 22 - 65535)
        while o >= lowest {
            if f.u32(o) == 0x0605_4B50 { eocd = o; break }
            o -= 1
        }
        guard eocd >= 0 else { throw ZipError.notAZip(file: label, detail: "no end-of-central-directory record") }
        var count = f.u16(eocd + 10)
        var cdSize = f.u32(eocd + 12)
        var cdOffset = f.u32(eocd + 16)
        guard f.u16(eocd + 4) == 0, f.u16(eocd + 6) == 0 else {
            throw ZipError.unsupported(file: label, entry: "(archive)", detail: "multi-disk archives are not supported")
        }
        if eocd >= 20, f.u32(eocd - 20) == 0x0706_4B50 {
            let zip64 = try f.u64(eocd - 20 + 8)
            guard zip64 <= z.count - 56, f.u32(zip64) == 0x0606_4B50 else {
                throw ZipError.malformed(file: label, offset: eocd - 20, detail: "ZIP64 locator points outside the file")
            }
            count = try f.u64(zip64 + 32)
            cdSize = try f.u64(zip64 + 40)
            cdOffset = try f.u64(zip64 + 48)
        }
        guard cdOffset <= z.count, cdSize <= z.count - cdOffset else {
            throw ZipError.malformed(file: label, offset: eocd, detail: "central directory (offset \(cdOffset), \(cdSize) bytes) lies outside the file")
        }
        guard count <= cdSize / 46 else {
            throw ZipError.malformed(file: label, offset: eocd, detail: "\(count) entries cannot fit a \(cdSize)-byte directory")
        }
        return (count, cdOffset, cdOffset + cdSize)
    }

    /// The central directory record at `p`: its entry (sizes from the ZIP64 extra field where saturated), checked
    /// against its local header; and where the next record starts.
    private static func centralEntry(_ f: Fields, at p: Int, directoryEnd cdEnd: Int) throws -> (Entry, next: Int) {
        let (z, label) = (f.z, f.label)
        guard p + 46 <= cdEnd, f.u32(p) == 0x0201_4B50 else {
            throw ZipError.malformed(file: label, offset: p, detail: "expected a central directory header")
        }
        let flags = f.u16(p + 8), method = f.u16(p + 10)
        let crc = UInt32(f.u32(p + 16))
        var compressed = f.u32(p + 20), size = f.u32(p + 24)
        let nameLength = f.u16(p + 28), extraLength = f.u16(p + 30), commentLength = f.u16(p + 32)
        var localOffset = f.u32(p + 42)
        let recordEnd = p + 46 + nameLength + extraLength + commentLength
        guard recordEnd <= cdEnd else { throw ZipError.malformed(file: label, offset: p, detail: "central header runs past the directory") }
        guard let name = String(validating: UnsafeRawBufferPointer(rebasing: z[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self) else {
            throw ZipError.malformed(file: label, offset: p + 46, detail: "entry name is not UTF-8")
        }
        try zip64Fields(f, extra: (p + 46 + nameLength)..<(p + 46 + nameLength + extraLength), size: &size, compressed: &compressed, localOffset: &localOffset)
        guard flags & 1 == 0 else { throw ZipError.unsupported(file: label, entry: name, detail: "encrypted entries are not supported") }
        guard method == 0 || method == 8 else {
            throw ZipError.unsupported(file: label, entry: name, detail: "compression method \(method) (only STORED and DEFLATE are read)")
        }
        guard method != 0 || compressed == size else {
            throw ZipError.malformed(file: label, offset: p, detail: "STORED entry \(name) has compressed size \(compressed) ≠ size \(size)")
        }
        try checkName(name, label: label)
        // Local header: signature and name must agree; its own extra length decides where data starts.
        guard localOffset <= z.count - 30, f.u32(localOffset) == 0x0403_4B50 else {
            throw ZipError.malformed(file: label, offset: localOffset, detail: "entry \(name): no local header where the directory points")
        }
        let localNameLength = f.u16(localOffset + 26), localExtraLength = f.u16(localOffset + 28)
        let dataOffset = localOffset + 30 + localNameLength + localExtraLength
        guard localNameLength == nameLength, dataOffset <= z.count,
              UnsafeRawBufferPointer(rebasing: z[(localOffset + 30)..<(localOffset + 30 + nameLength)]).elementsEqual(name.utf8)
        else {
            throw ZipError.malformed(file: label, offset: localOffset, detail: "entry \(name): local header name differs from the directory")
        }
        guard compressed <= z.count - dataOffset else {
            throw ZipError.malformed(file: label, offset: dataOffset, detail: "entry \(name): \(compressed) bytes of data run past the end of the file")
        }
        return (Entry(name: name, method: UInt16(method), crc32: crc, compressedSize: compressed, size: size, dataOffset: dataOffset), recordEnd)
    }

    /// ZIP64 extended information (extra field 0x0001) replaces the fields saturated at 0xFFFFFFFF, in this order.
    private static func zip64Fields(_ f: Fields, extra: Range<Int>, size: inout Int, compressed: inout Int, localOffset: inout Int) throws {
        var x = extra.lowerBound
        while x + 4 <= extra.upperBound {
            let id = f.u16(x), len = f.u16(x + 2)
            guard x + 4 + len <= extra.upperBound else { throw ZipError.malformed(file: f.label, offset: x, detail: "extra field runs past its record") }
            if id == 0x0001 {
                var at = x + 4
                for field in 0..<3 {
                    guard (field == 0 ? size : field == 1 ? compressed : localOffset) == 0xFFFF_FFFF else { continue }
                    guard at + 8 <= x + 4 + len else { throw ZipError.malformed(file: f.label, offset: at, detail: "ZIP64 extra field too short") }
                    let v = try f.u64(at)
                    if field == 0 { size = v } else if field == 1 { compressed = v } else { localOffset = v }
                    at += 8
                }
            }
            x += 4 + len
        }
    }

    private static func checkName(_ name: String, label: String) throws {
        // Byte tests (an ASCII byte never occurs inside a longer UTF-8 sequence): a directory of thousands of names
        // is checked in microseconds, where substring searches took milliseconds.
        let bytes = name.utf8
        let parts = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard !bytes.isEmpty, bytes.first != UInt8(ascii: "/"), !bytes.contains(UInt8(ascii: "\\")), !bytes.contains(0),
              !parts.contains(where: { $0.elementsEqual("..".utf8) }), !(parts.first?.contains(UInt8(ascii: ":")) ?? false)
        else { throw ZipError.unsafeName(file: label, name: name) }
    }
}
