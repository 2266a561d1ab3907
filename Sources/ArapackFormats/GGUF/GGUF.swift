import ArapackTensor

/// GGUF v3, llama.cpp's file format (docs/formats.md, "GGUF"): the value and tensor types arapack writes and reads.
public enum GGUF {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let version: UInt32 = 3
    /// `general.alignment` when a file does not state one; arapack always writes it.
    public static let defaultAlignment = 32

    /// The tensor types arapack writes (ggml's `ggml_type` numbers).
    public enum TensorType: UInt32, Sendable, CaseIterable {
        case f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30

        /// Elements per block, and bytes per block (Q8_0: 32 values, one float16 scale, 32 int8).
        public var blockElements: Int { self == .q8_0 ? 32 : 1 }
        public var blockBytes: Int {
            switch self {
            case .f32: return 4
            case .f16, .bf16: return 2
            case .q8_0: return 34
            }
        }
        public var name: String {
            switch self {
            case .f32: return "F32"
            case .f16: return "F16"
            case .q8_0: return "Q8_0"
            case .bf16: return "BF16"
            }
        }
        /// `general.file_type` (llama.cpp's `llama_ftype`) of a file whose matrices are of this type.
        public var fileType: UInt32 {
            switch self {
            case .f32: return 0
            case .f16: return 1
            case .q8_0: return 7
            case .bf16: return 32
            }
        }
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
            case .q8_0: return nil
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
