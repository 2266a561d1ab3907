import ArapackTensor

/// Validates a safetensors file arriving as a byte stream: the header (every rule of the strict reader),
/// then each tensor's bytes counted for NaN/Inf as they pass. Memory: the header, one element, and the few tensors
/// of at most 64 bytes.
public final class SafetensorsStreamScanner {
    public let file: String
    public let size: Int
    private var headerBytes: [UInt8] = []
    private var header: SafetensorsHeader?
    private var position = 0
    private var entryIndex = 0
    private var carry: [UInt8] = []
    public private(set) var nonFinite: [String: Int] = [:]
    /// The bytes of each tensor of at most `smallTensorBytes` (an int4 weight's stated shape), kept for checks.
    public private(set) var smallTensors: [String: [UInt8]] = [:]
    public static let smallTensorBytes = 64

    public init(file: String, size: Int) {
        self.file = file
        self.size = size
    }

    public func feed(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        if header == nil {
            let need = headerBytes.count < 8 ? 8 : 8 + headerLength()
            let n = min(need - headerBytes.count, rest.count)
            headerBytes += rest.prefix(n)
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            if headerBytes.count == 8 && headerLength() > SafetensorsHeader.maximumHeaderLength {
                _ = try headerBytes.withUnsafeBytes { try SafetensorsHeader.parse($0, fileSize: size, file: file) }
            }
            if headerBytes.count >= 8, headerBytes.count == 8 + headerLength() {
                header = try headerBytes.withUnsafeBytes { try SafetensorsHeader.parse($0, fileSize: size, file: file) }
                header!.entries.forEach { nonFinite[$0.name] = 0 }
            }
            if header == nil {
                if !rest.isEmpty { try feed(rest) }
                return
            }
        }
        try scan(rest)
    }

    private func headerLength() -> Int {
        Int(min(UInt64(littleEndian: headerBytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }), UInt64(Int.max - 8)))
    }

    private func scan(_ bytes: UnsafeRawBufferPointer) throws {
        guard let header else { return }
        var rest = bytes
        while !rest.isEmpty {
            while entryIndex < header.entries.count, header.entries[entryIndex].dataRange.upperBound <= position { entryIndex += 1 }
            guard entryIndex < header.entries.count else {
                throw SafetensorsError.bytesAfterLastTensor(file: file)
            }
            let e = header.entries[entryIndex]
            let n = min(rest.count, e.dataRange.upperBound - position)
            var piece = UnsafeRawBufferPointer(rebasing: rest[0..<n])
            if e.dataRange.count <= Self.smallTensorBytes { smallTensors[e.name, default: []] += piece }
            let element = e.dtype.byteSize
            var count = 0
            if !carry.isEmpty {
                let take = min(element - carry.count, piece.count)
                carry += piece.prefix(take)
                piece = UnsafeRawBufferPointer(rebasing: piece[take...])
                if carry.count == element {
                    count += carry.withUnsafeBytes { NonFinite.count($0, dtype: e.dtype) }
                    carry = []
                }
            }
            let whole = piece.count / element * element
            count += NonFinite.count(UnsafeRawBufferPointer(rebasing: piece[0..<whole]), dtype: e.dtype)
            carry += piece[whole...]
            nonFinite[e.name, default: 0] += count
            position += n
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    public func finish() throws -> SafetensorsHeader {
        guard let header else { throw SafetensorsError.incompleteHeader(file: file) }
        return header
    }
}
