import ArapackTensor

/// The `.idx` file of a Megatron-LM indexed dataset (docs/formats.md, "Token shards"), as megatron-core's
/// `IndexedDatasetBuilder` writes it: `MMIDIDX\0\0`, version u64 1, dtype code u8, sequence count u64, document count
/// u64, then i32 lengths, i64 byte pointers into the `.bin`, i64 document indices, and nothing after them. Every count
/// is checked against the file's size before anything is sized by it.
struct MegatronIndex {
    static let magic: [UInt8] = Array("MMIDIDX".utf8) + [0, 0]
    /// The dtype codes of megatron-core's `DType` that hold token ids arapack reads (1 u8, 2 i8, 3 i16, 6 f64 and 7 f32
    /// are refused).
    static let dtypes: [UInt8: TokenDType] = [4: .i32, 5: .i64, 8: .u16]

    let dtype: TokenDType
    let lengths: [Int]
    let pointers: [Int]

    init(path: String) throws {
        let file = try MappedFile(path: path)
        func bad(_ field: String, _ detail: String) -> TokenShardError { .header(file: path, field: field, detail: detail) }
        (dtype, lengths, pointers) = try file.withUnsafeBytes { b in
            guard b.count >= 34 else { throw bad("header", "\(b.count) bytes; the header alone takes 34") }
            guard Array(b.prefix(9)) == Self.magic else { throw bad("magic", "not MMIDIDX\\0\\0") }
            let version = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 9, as: UInt64.self))
            guard version == 1 else { throw bad("version", "\(version); megatron-core writes version 1") }
            let code = b[17]
            guard let dtype = Self.dtypes[code] else {
                throw bad("dtype", "code \(code) (at byte 17); token ids are int32 (4), int64 (5) or uint16 (8)")
            }
            let sequences = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 18, as: UInt64.self))
            let documents = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 26, as: UInt64.self))
            // 34 + 12·sequences + 8·documents bytes exactly, checked without overflow before any array is made.
            let room = UInt64(b.count - 34)
            guard sequences <= room / 12, documents <= (room - sequences * 12) / 8, 34 + sequences * 12 + documents * 8 == UInt64(b.count) else {
                let fits = sequences <= room / 12 && documents <= room / 8
                throw TokenShardError.layout(file: path, detail: "\(sequences) sequences and \(documents) documents need "
                    + (fits ? "\(34 + sequences * 12 + documents * 8) bytes; the file has \(b.count)" : "more bytes than the file's \(b.count)"))
            }
            let n = Int(sequences)
            var lengths = [Int](repeating: 0, count: n), pointers = [Int](repeating: 0, count: n)
            for i in 0..<n {
                let length = Int32(littleEndian: b.loadUnaligned(fromByteOffset: 34 + 4 * i, as: Int32.self))
                let pointer = Int64(littleEndian: b.loadUnaligned(fromByteOffset: 34 + 4 * n + 8 * i, as: Int64.self))
                guard length >= 0 else { throw bad("sequence_lengths[\(i)]", "\(length) (at byte \(34 + 4 * i)) is negative") }
                guard pointer >= 0 else { throw bad("sequence_pointers[\(i)]", "\(pointer) (at byte \(34 + 4 * n + 8 * i)) is negative") }
                (lengths[i], pointers[i]) = (Int(length), Int(pointer))
            }
            return (dtype, lengths, pointers)
        }
    }
}
