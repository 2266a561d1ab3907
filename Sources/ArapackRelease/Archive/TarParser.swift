import ArapackFormats
import ArapackTensor
import CZstd
#if canImport(Glibc)
import Glibc
#endif

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
