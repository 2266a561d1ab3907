/// An element type, named as safetensors names it.
///
/// The declaration order is the order the reference safetensors writer ranks dtypes by:
/// files are laid out with the highest rank first, then by name.
public enum DType: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Whether the type holds floating-point values (and so is cast by quantization).
    public var isFloatingPoint: Bool {
        switch self {
        case .f8e5m2, .f8e4m3, .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// Rank used for the deterministic writer order (higher first).
    public var writeRank: Int { DType.allCases.firstIndex(of: self)! }

    /// The safetensors name, e.g. `F32`.
    public var name: String { rawValue }

    public var description: String { rawValue }

    /// The dtype for a safetensors name; names are case-sensitive.
    public init?(safetensorsName: String) { self.init(rawValue: safetensorsName) }
}
