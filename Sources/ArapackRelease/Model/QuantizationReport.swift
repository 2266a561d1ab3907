import ArapackFormats
import CKernels

/// What quantization (or a cast) did to one tensor.
public struct QuantizationRecord: Codable, Equatable, Sendable {
    public var name: String
    public var maxAbsError: Double
    /// 10·log10(Σx² / Σ(x − x̂)²); infinite when exact.
    public var snrDB: Double
    public var bytesBefore: Int
    public var bytesAfter: Int

    /// Accumulates the error of `approx` against `exact` (in double; the loops are CKernels').
    public struct Accumulator {
        /// Σx², Σ(x − x̂)², max |x − x̂|.
        private var stats: [Double] = [0, 0, 0]

        mutating func withStats(_ body: (UnsafeMutablePointer<Double>) -> Void) {
            stats.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        }

        /// Adds whole buffers.
        mutating func add(_ exact: UnsafeBufferPointer<Float>, _ approx: UnsafeBufferPointer<Float>) {
            withStats { arapack_error_stats(exact.baseAddress!, approx.baseAddress!, exact.count, $0) }
        }

        public func record(_ name: String, before: Int, after: Int) -> QuantizationRecord {
            QuantizationRecord(name: name, maxAbsError: stats[2], snrDB: stats[1] == 0 ? .infinity : 10 * log10(stats[0] / stats[1]),
                               bytesBefore: before, bytesAfter: after)
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, maxAbsError = "max_abs_error", snrDB = "snr_db", bytesBefore = "bytes_before", bytesAfter = "bytes_after"
    }

    /// The SNR as written: two decimals, or the string "inf" for an exact tensor.
    var snrJSON: JSONValue { snrDB.isFinite ? .double((snrDB * 100).rounded() / 100) : .string("inf") }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(maxAbsError, forKey: .maxAbsError)
        try c.encode(snrJSON, forKey: .snrDB)
        try c.encode(bytesBefore, forKey: .bytesBefore)
        try c.encode(bytesAfter, forKey: .bytesAfter)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        maxAbsError = try c.decode(Double.self, forKey: .maxAbsError)
        if let v = try? c.decode(Double.self, forKey: .snrDB) {
            snrDB = v
        } else {
            snrDB = try c.decode(String.self, forKey: .snrDB) == "inf" ? .infinity : .nan
        }
        bytesBefore = try c.decode(Int.self, forKey: .bytesBefore)
        bytesAfter = try c.decode(Int.self, forKey: .bytesAfter)
    }

    init(name: String, maxAbsError: Double, snrDB: Double, bytesBefore: Int, bytesAfter: Int) {
        (self.name, self.maxAbsError, self.snrDB, self.bytesBefore, self.bytesAfter) = (name, maxAbsError, snrDB, bytesBefore, bytesAfter)
    }

    /// The cells of the report's table (max |error|, SNR dB, bytes before, bytes after), as the card and convert print them.
    public var cells: [String] {
        [JSONValue.double(maxAbsError).serialized(), snrDB.isFinite ? snrJSON.serialized() : "inf", String(bytesBefore), String(bytesAfter)]
    }
}

/// The per-tensor report of a narrowed or quantized bundle (docs/bundle.md): in manifest.json, the model card and
/// convert's table, read from this one type.
public struct QuantizationReport: Codable, Equatable, Sendable {
    /// How the weights were narrowed or quantized, in words.
    public var method: String
    /// Every narrowed tensor, by name.
    public var tensors: [QuantizationRecord]
}

#if canImport(Glibc)
import Glibc
#endif
