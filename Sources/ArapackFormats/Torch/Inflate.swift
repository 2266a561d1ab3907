/// A DEFLATE (RFC 1951) decoder for the rare zip entries that are not STORED. Output is capped:
/// a stream that would inflate past `limit` bytes is refused before it can exhaust memory.
enum Inflate {
    struct Failure: Error { let detail: String }

    /// Inflates `input`; throws `Failure` on malformed data or when output would pass `limit`.
    static func inflate(_ input: UnsafeRawBufferPointer, limit: Int) throws -> [UInt8] {
        var s = State(input: input, limit: limit)
        var last = false
        while !last {
            last = try s.bits(1) == 1
            switch try s.bits(2) {
            case 0: try s.stored()
            case 1: try s.block(lit: Self.fixedLit, dist: Self.fixedDist)
            case 2: let (l, d) = try s.dynamicTables(); try s.block(lit: l, dist: d)
            default: throw Failure(detail: "invalid block type")
            }
        }
        return s.out
    }

    /// Canonical Huffman decoding table: counts per length and symbols in code order.
    struct Huffman {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []
        init(lengths: [Int]) throws {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var offsets = [Int](repeating: 0, count: 16)
            for i in 1..<16 { offsets[i] = offsets[i - 1] + counts[i - 1] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (sym, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = sym
                offsets[l] += 1
            }
            var left = 1
            for i in 1..<16 {
                left = left * 2 - counts[i]
                if left < 0 { throw Failure(detail: "over-subscribed Huffman code") }
            }
        }
    }

    static let fixedLit = try! Huffman(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
    static let fixedDist = try! Huffman(lengths: [Int](repeating: 5, count: 30))
    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    struct State {
        let input: UnsafeRawBufferPointer
        let limit: Int
        var position = 0
        var bitBuffer = 0
        var bitCount = 0
        var out: [UInt8] = []

        init(input: UnsafeRawBufferPointer, limit: Int) {
            self.input = input
            self.limit = limit
        }

        mutating func bits(_ n: Int) throws -> Int {
            while bitCount < n {
                guard position < input.count else { throw Failure(detail: "truncated stream") }
                bitBuffer |= Int(input[position]) << bitCount
                position += 1
                bitCount += 8
            }
            let v = bitBuffer & ((1 << n) - 1)
            bitBuffer >>= n
            bitCount -= n
            return v
        }

        mutating func emit(_ byte: UInt8) throws {
            guard out.count < limit else { throw Failure(detail: "limit") }
            out.append(byte)
        }

        mutating func stored() throws {
            bitBuffer = 0
            bitCount = 0
            guard position + 4 <= input.count else { throw Failure(detail: "truncated stored block") }
            let len = Int(input[position]) | Int(input[position + 1]) << 8
            let nlen = Int(input[position + 2]) | Int(input[position + 3]) << 8
            guard len == (~nlen & 0xFFFF) else { throw Failure(detail: "stored block length check failed") }
            position += 4
            guard position + len <= input.count else { throw Failure(detail: "truncated stored block") }
            for i in 0..<len { try emit(input[position + i]) }
            position += len
        }

        mutating func decode(_ h: Huffman) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1..<16 {
                code |= try bits(1)
                let count = h.counts[len]
                if code - count < first { return h.symbols[index + (code - first)] }
                index += count
                first = (first + count) << 1
                code <<= 1
            }
            throw Failure(detail: "invalid Huffman code")
        }

        mutating func block(lit: Huffman, dist: Huffman) throws {
            while true {
                let sym = try decode(lit)
                if sym < 256 { try emit(UInt8(sym)); continue }
                if sym == 256 { return }
                let li = sym - 257
                guard li < 29 else { throw Failure(detail: "invalid length symbol") }
                let length = Inflate.lengthBase[li] + (try bits(Inflate.lengthExtra[li]))
                let di = try decode(dist)
                guard di < 30 else { throw Failure(detail: "invalid distance symbol") }
                let distance = Inflate.distBase[di] + (try bits(Inflate.distExtra[di]))
                guard distance <= out.count else { throw Failure(detail: "distance before start of output") }
                for _ in 0..<length { try emit(out[out.count - distance]) }
            }
        }

        mutating func dynamicTables() throws -> (Huffman, Huffman) {
            let nlen = try bits(5) + 257, ndist = try bits(5) + 1, ncode = try bits(4) + 4
            guard nlen <= 286, ndist <= 30 else { throw Failure(detail: "bad table sizes") }
            let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
            var codeLengths = [Int](repeating: 0, count: 19)
            for i in 0..<ncode { codeLengths[order[i]] = try bits(3) }
            let codeTable = try Huffman(lengths: codeLengths)
            var lengths: [Int] = []
            while lengths.count < nlen + ndist {
                let sym = try decode(codeTable)
                switch sym {
                case 0..<16: lengths.append(sym)
                case 16:
                    guard let prev = lengths.last else { throw Failure(detail: "repeat with no previous length") }
                    lengths += repeatElement(prev, count: 3 + (try bits(2)))
                case 17: lengths += repeatElement(0, count: 3 + (try bits(3)))
                default: lengths += repeatElement(0, count: 11 + (try bits(7)))
                }
            }
            guard lengths.count == nlen + ndist else { throw Failure(detail: "code lengths overrun") }
            return (try Huffman(lengths: Array(lengths[0..<nlen])), try Huffman(lengths: Array(lengths[nlen...])))
        }
    }
}
