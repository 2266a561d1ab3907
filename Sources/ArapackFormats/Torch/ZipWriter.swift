import ArapackTensor

/// Writes a zip the way `torch.save` does: STORED entries whose data starts on a 64-byte boundary (an
/// `FB` extra field pads the local header), CRC-32 in a data descriptor after each entry, ZIP64 records
/// once a size or offset passes 4 GiB, fixed timestamps. Output goes through an `AtomicFileWriter`.
public final class ZipWriter {
    private struct Record {
        var name: [UInt8]
        var crc: UInt32
        var size: Int
        var offset: Int
    }

    /// Data alignment torch uses (`.storage_alignment`).
    public static let alignment = 64
    private let out: AtomicFileWriter
    private var records: [Record] = []
    /// Where the zip starts in `out`: offsets are relative to it, so zips can follow each other in one file.
    private let base: Int
    /// Sizes and offsets from this value on use ZIP64 fields (lowered only by tests).
    let zip64Threshold: Int

    /// Writes into `out`, which the caller commits after `finish()`.
    public convenience init(_ out: AtomicFileWriter) { self.init(out, zip64Threshold: 0xFFFF_FFFF) }

    init(_ out: AtomicFileWriter, zip64Threshold: Int) {
        self.out = out
        self.zip64Threshold = zip64Threshold
        base = out.bytesWritten
    }

    /// Adds an entry holding `bytes`.
    public func add(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        let nameBytes = Array(name.utf8)
        let offset = out.bytesWritten - base
        let zip64 = bytes.count >= zip64Threshold || offset >= zip64Threshold
        var extra: [UInt8] = []
        if zip64 { extra += le16(1) + le16(16) + le64(0) + le64(0) }
        // Pad with an "FB" field so the data begins on the alignment boundary.
        let unpadded = offset + 30 + nameBytes.count + extra.count
        let pad = (Self.alignment - (unpadded + 4) % Self.alignment) % Self.alignment
        extra += [0x46, 0x42] + le16(pad) + [UInt8](repeating: 0x5A, count: pad)
        var header = le32(0x0403_4B50) + le16(zip64 ? 45 : 20) + le16(0x0008) + le16(0) + le16(0) + le16(0x21)
        header += le32(0) + le32(zip64 ? 0xFFFF_FFFF : 0) + le32(zip64 ? 0xFFFF_FFFF : 0)
        header += le16(nameBytes.count) + le16(extra.count) + nameBytes + extra
        try out.write(header)
        precondition((out.bytesWritten - base) % Self.alignment == 0)
        var crc = CRC32()
        var done = 0
        while done < bytes.count {
            let end = min(done + (16 << 20), bytes.count)
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[done..<end])
            crc.update(chunk)
            try out.write(chunk)
            done = end
        }
        var descriptor = le32(0x0807_4B50) + le32(Int(crc.value))
        descriptor += zip64 ? le64(bytes.count) + le64(bytes.count) : le32(bytes.count) + le32(bytes.count)
        try out.write(descriptor)
        records.append(Record(name: nameBytes, crc: crc.value, size: bytes.count, offset: offset))
    }

    /// Adds an entry holding `bytes`.
    public func add(_ name: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try add(name, $0) }
    }

    /// Writes the central directory and end records.
    public func finish() throws {
        let directoryStart = out.bytesWritten - base
        var anyZip64 = false
        for r in records {
            let bigSize = r.size >= zip64Threshold, bigOffset = r.offset >= zip64Threshold
            var extra: [UInt8] = []
            if bigSize || bigOffset {
                anyZip64 = true
                var fields: [UInt8] = []
                if bigSize { fields += le64(r.size) + le64(r.size) }
                if bigOffset { fields += le64(r.offset) }
                extra = le16(1) + le16(fields.count) + fields
            }
            var h = le32(0x0201_4B50) + le16(bigSize || bigOffset ? 45 : 20) + le16(bigSize || bigOffset ? 45 : 20)
            h += le16(0x0008) + le16(0) + le16(0) + le16(0x21) + le32(Int(r.crc))
            h += le32(bigSize ? 0xFFFF_FFFF : r.size) + le32(bigSize ? 0xFFFF_FFFF : r.size)
            h += le16(r.name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
            h += le32(bigOffset ? 0xFFFF_FFFF : r.offset) + r.name + extra
            try out.write(h)
        }
        let directorySize = out.bytesWritten - base - directoryStart
        let needs64 = anyZip64 || records.count >= 0xFFFF || directoryStart >= zip64Threshold
        if needs64 {
            let record64 = out.bytesWritten - base
            var e = le32(0x0606_4B50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            e += le64(records.count) + le64(records.count) + le64(directorySize) + le64(directoryStart)
            e += le32(0x0706_4B50) + le32(0) + le64(record64) + le32(1)
            try out.write(e)
        }
        var end = le32(0x0605_4B50) + le16(0) + le16(0)
        end += le16(needs64 ? 0xFFFF : records.count) + le16(needs64 ? 0xFFFF : records.count)
        end += le32(needs64 ? 0xFFFF_FFFF : directorySize) + le32(needs64 ? 0xFFFF_FFFF : directoryStart) + le16(0)
        try out.write(end)
    }

    private func le16(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { Array($0) } }
    private func le32(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { Array($0) } }
    private func le64(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian) { Array($0) } }
}
