import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// The integer types token ids are stored in.
public enum TokenDType: String, CaseIterable, Sendable {
    case u16, u32, i32, i64

    public var itemSize: Int {
        switch self {
        case .u16: return 2
        case .u32, .i32: return 4
        case .i64: return 8
        }
    }
}

/// Token shards: evaluation data as training pipelines store it (docs/formats.md, "Token shards"), memory-mapped and
/// read in place. One path is a NumPy `.npy` file (1-D stream or 2-D `[sequences, length]`), a raw memmap file (its
/// dtype and sequence length given), a Megatron-LM indexed dataset (`X.idx` beside `X.bin`, either named), or a folder
/// of such shards read in name order. Every header is checked against the data before a sequence is handed out, and
/// every id against the vocabulary when it is read (`ids(of:vocabulary:)`).
public final class TokenShards {
    /// One shard file and how its ids are stored.
    public struct File: Sendable {
        public let path: String
        let mapping: MappedFile
        public let dtype: TokenDType
        public let bigEndian: Bool
    }

    /// A run of ids inside one file: `count` ids from element `start`.
    public struct Sequence: Sendable, Equatable {
        public let file: Int
        public let start: Int
        public let count: Int

        public init(file: Int, start: Int, count: Int) {
            (self.file, self.start, self.count) = (file, start, count)
        }
    }

    public let path: String
    public private(set) var files: [File] = []
    public private(set) var sequences: [Sequence] = []

    /// Opens `path` (file or folder). `rawDType` and `sequenceLength` apply to raw memmap files (the dtype is required
    /// for them) and to 1-D streams (cut into runs of `sequenceLength`; nil leaves a stream whole).
    public init(path: String, rawDType: TokenDType? = nil, sequenceLength: Int? = nil) throws {
        self.path = path
        if let l = sequenceLength, l < 1 { throw TokenShardError.usage("the sequence length must be at least 1") }
        switch try FileKind(atPath: path) {
        case .directory:
            let names = try directoryEntries(path)
            for name in names where !name.hasPrefix(".") {
                let p = path + "/" + name
                guard case .regular = try FileKind(atPath: p) else { throw TokenShardError.notAShard(file: p, detail: "not a regular file") }
                // A Megatron pair is read once, from its .idx; its .bin is skipped.
                if name.hasSuffix(".bin"), names.contains(String(name.dropLast(4)) + ".idx") { continue }
                try add(p, rawDType: rawDType, sequenceLength: sequenceLength)
            }
        case .regular:
            try add(path, rawDType: rawDType, sequenceLength: sequenceLength)
        case .symlink, .other:
            var st = stat()
            guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw TokenShardError.notAShard(file: path, detail: "not a regular file or folder")
            }
            try add(path, rawDType: rawDType, sequenceLength: sequenceLength)
        }
        guard !sequences.isEmpty else { throw TokenShardError.empty(path: path) }
    }

    /// The total number of ids in the sequences.
    public var tokenCount: Int { sequences.reduce(0) { $0 + $1.count } }

    /// The ids of `sequence`, each checked to lie in `0..<vocabulary` (the error names the file and the element).
    public func ids(of sequence: Sequence, vocabulary: Int) throws -> [Int] {
        let f = files[sequence.file]
        return try f.mapping.withUnsafeBytes { raw in
            var out = [Int](repeating: 0, count: sequence.count)
            let base = sequence.start * f.dtype.itemSize
            for i in 0..<sequence.count {
                let at = base + i * f.dtype.itemSize
                func load<T: FixedWidthInteger>(_: T.Type) -> Int {
                    let x = raw.loadUnaligned(fromByteOffset: at, as: T.self)
                    return Int(f.bigEndian ? T(bigEndian: x) : T(littleEndian: x))
                }
                let v: Int
                switch f.dtype {
                case .u16: v = load(UInt16.self)
                case .u32: v = load(UInt32.self)
                case .i32: v = load(Int32.self)
                case .i64: v = load(Int64.self)
                }
                guard v >= 0 && v < vocabulary else {
                    throw TokenShardError.idOutOfRange(file: f.path, offset: at, id: v, vocabulary: vocabulary)
                }
                out[i] = v
            }
            return out
        }
    }

    private func add(_ path: String, rawDType: TokenDType?, sequenceLength: Int?) throws {
        let idx: String, bin: String
        if path.hasSuffix(".idx") || path.hasSuffix(".bin") {
            (idx, bin) = (String(path.dropLast(4)) + ".idx", String(path.dropLast(4)) + ".bin")
        } else {
            (idx, bin) = ("", "")
        }
        if !idx.isEmpty, pathExists(idx), pathExists(bin) {
            let index = try MegatronIndex(path: idx)
            let data = try MappedFile(path: bin)
            let item = index.dtype.itemSize
            guard data.count % item == 0 else {
                throw TokenShardError.layout(file: bin, detail: "\(data.count) bytes is not a whole number of \(index.dtype.rawValue) ids")
            }
            let fileIndex = files.count
            files.append(File(path: bin, mapping: data, dtype: index.dtype, bigEndian: false))
            for (i, (pointer, length)) in zip(index.pointers, index.lengths).enumerated() {
                let (end, overflow) = pointer.addingReportingOverflow(length * item)
                guard pointer % item == 0, !overflow, end <= data.count else {
                    throw TokenShardError.layout(file: idx, detail: "sequence \(i) (pointer \(pointer), \(length) ids) leaves \(bin) (\(data.count) bytes)")
                }
                cut(Sequence(file: fileIndex, start: pointer / item, count: length), by: sequenceLength)
            }
            return
        }
        let mapping = try MappedFile(path: path)
        if mapping.count >= 6, mapping.withUnsafeBytes({ Array($0.prefix(6)) }) == NumpyHeader.magic {
            let header = try mapping.withUnsafeBytes { try NumpyHeader(parsing: $0, file: path) }
            let fileIndex = files.count
            files.append(File(path: path, mapping: mapping, dtype: header.dtype, bigEndian: header.bigEndian))
            let first = header.dataOffset / header.dtype.itemSize
            guard header.dataOffset % header.dtype.itemSize == 0 else {
                throw TokenShardError.layout(file: path, detail: "the data starts at byte \(header.dataOffset), not on a \(header.dtype.itemSize)-byte boundary")
            }
            if header.shape.count == 2 {
                let (rows, length) = (header.shape[0], header.shape[1])
                for r in 0..<rows where length > 0 { sequences.append(Sequence(file: fileIndex, start: first + r * length, count: length)) }
            } else {
                cut(Sequence(file: fileIndex, start: first, count: header.shape[0]), by: sequenceLength)
            }
            return
        }
        guard let dtype = rawDType else {
            throw TokenShardError.notAShard(file: path, detail: "neither a .npy file nor a Megatron .idx/.bin pair; a raw memmap file needs --token-dtype")
        }
        guard mapping.count % dtype.itemSize == 0 else {
            throw TokenShardError.layout(file: path, detail: "\(mapping.count) bytes is not a whole number of \(dtype.rawValue) ids")
        }
        files.append(File(path: path, mapping: mapping, dtype: dtype, bigEndian: false))
        cut(Sequence(file: files.count - 1, start: 0, count: mapping.count / dtype.itemSize), by: sequenceLength)
    }

    /// Appends `s`, cut into consecutive runs of `length` ids when given (a last shorter run is kept).
    private func cut(_ s: Sequence, by length: Int?) {
        guard s.count > 0 else { return }
        guard let length, s.count > length else { sequences.append(s); return }
        for start in stride(from: 0, to: s.count, by: length) {
            sequences.append(Sequence(file: s.file, start: s.start + start, count: min(length, s.count - start)))
        }
    }
}

/// Why token shards cannot be read (exit 2): the file, and the field or offset.
public enum TokenShardError: Error, CustomStringConvertible, Sendable, Equatable {
    case usage(String)
    case empty(path: String)
    case notAShard(file: String, detail: String)
    /// A header field that is malformed or not one arapack reads.
    case header(file: String, field: String, detail: String)
    /// Header and data disagree (sizes, pointers, alignment).
    case layout(file: String, detail: String)
    case idOutOfRange(file: String, offset: Int, id: Int, vocabulary: Int)

    public var description: String {
        switch self {
        case let .usage(detail): return detail
        case let .empty(path): return "\(path): no token sequences"
        case let .notAShard(file, detail): return "\(file): \(detail)"
        case let .header(file, field, detail): return "\(file): header field \(field): \(detail)"
        case let .layout(file, detail): return "\(file): \(detail)"
        case let .idOutOfRange(file, offset, id, vocabulary):
            return "\(file): byte \(offset): token id \(id) is outside the vocabulary (0..<\(vocabulary))"
        }
    }
}
