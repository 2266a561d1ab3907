import ArapackTensor

/// GGUF v3, llama.cpp's file format (docs/formats.md, "GGUF"): the value and tensor types arapack writes and reads.
public enum GGUF {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    /// `general.alignment` when a file does not state one; arapack always writes it.
    public static let defaultAlignment = 32

    /// The tensor types arapack writes and reads (ggml's `ggml_type` numbers): floats, and the block types
    /// (docs/formats.md, "GGUF block types").
    public enum TensorType: UInt32, Sendable, CaseIterable {
        case f32 = 0, f16 = 1, q4_0 = 2, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

        /// Elements per block, and bytes per block (Q8_0: 32 values, one float16 scale, 32 int8; the K-quants:
        /// super-blocks of 256).
        public var blockElements: Int {
            switch self {
            case .f32, .f16, .bf16: return 1
            case .q4_0, .q5_0, .q5_1, .q8_0: return 32
            case .q4_K, .q5_K, .q6_K: return 256
            }
        }
        public var blockBytes: Int {
            switch self {
            case .f32: return 4
            case .f16, .bf16: return 2
            case .q4_0: return 18
            case .q5_0: return 22
            case .q5_1: return 24
            case .q8_0: return 34
            case .q4_K: return 144
            case .q5_K: return 176
            case .q6_K: return 210
            }
        }
        /// ggml's name of the type (`Q4_K`).
        public var name: String {
            switch self {
            case .f32: return "F32"
            case .f16: return "F16"
            case .bf16: return "BF16"
            case .q4_0: return "Q4_0"
            case .q5_0: return "Q5_0"
            case .q5_1: return "Q5_1"
            case .q8_0: return "Q8_0"
            case .q4_K: return "Q4_K"
            case .q5_K: return "Q5_K"
            case .q6_K: return "Q6_K"
            }
        }
        /// Whether values are stored in blocks with scales (read dequantized to float32).
        public var isBlock: Bool { dtype == nil }
        /// Bytes of `elements` values (nil when they do not fill whole blocks or overflow).
        public func byteCount(elements: Int) -> Int? {
            guard elements >= 0, elements % blockElements == 0 else { return nil }
            let (n, overflow) = (elements / blockElements).multipliedReportingOverflow(by: blockBytes)
            return overflow ? nil : n
        }
        /// The same values as an arapack dtype, for the unquantized types.
        public var dtype: DType? {
            switch self {
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            default: return nil
            }
        }
    }

    /// A metadata value (ggml's `gguf_type` numbers in `typeCode`); arrays hold values of one type.
    public enum Value: Equatable, Sendable {
        case uint32(UInt32)
        case int32(Int32)
        case uint64(UInt64)
        case float32(Float)
        case bool(Bool)
        case string(String)
        case strings([String])
        case float32s([Float])
        case int32s([Int32])

        /// The type code of the value (of the elements, for arrays).
        var typeCode: UInt32 {
            switch self {
            case .uint32: return 4
            case .int32, .int32s: return 5
            case .float32, .float32s: return 6
            case .bool: return 7
            case .string, .strings: return 8
            case .uint64: return 10
            }
        }
        static let arrayCode: UInt32 = 9
    }
}
