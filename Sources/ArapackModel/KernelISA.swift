import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// The x86-64 instruction set the forward pass's kernels run on. Every choice computes the same bits (each
/// output is one fixed chain of fused multiply-adds); a narrower one is there to prove that on a wider machine.
/// The environment variable `ARAPACK_ISA` (`avx512`, `avx2` or `generic`) picks one; without it, the widest
/// this CPU runs.
public enum KernelISA: String, CaseIterable, Sendable {
    case generic, avx2, avx512

    /// The widest instruction set this CPU runs.
    public static var best: KernelISA { KernelISA(code: arapack_isa_best()) }

    /// Every instruction set this CPU runs, narrowest first.
    public static var supported: [KernelISA] { allCases.filter { $0.code <= best.code } }

    /// The instruction set the kernels use now.
    public static var active: KernelISA { KernelISA(code: arapack_isa()) }

    /// Uses the set `ARAPACK_ISA` names. The variable is read and applied once per process (the first call); later
    /// calls only report the same outcome, so a later `use(_:)` stays in force. Throws `ForwardError.unknownISA` for
    /// a name not in the list and `.isaNotSupported` for a set this CPU lacks.
    public static func configureFromEnvironment() throws {
        try environmentChoice.get()
    }

    private static let environmentChoice: Result<Void, ForwardError> = {
        guard let value = getenv("ARAPACK_ISA").map({ String(cString: $0) }), !value.isEmpty else { return .success(()) }
        guard let isa = KernelISA(rawValue: value.lowercased()) else {
            return .failure(.unknownISA(value, supported: allCases.map(\.rawValue)))
        }
        guard arapack_set_isa(isa.code) == 0 else { return .failure(.isaNotSupported(isa.rawValue, best: best.rawValue)) }
        return .success(())
    }()

    /// Makes the kernels use `isa`; throws `ForwardError.isaNotSupported` when this CPU cannot run it.
    public static func use(_ isa: KernelISA) throws {
        guard arapack_set_isa(isa.code) == 0 else { throw ForwardError.isaNotSupported(isa.rawValue, best: best.rawValue) }
    }

    var code: Int32 {
        switch self {
        case .generic: return Int32(ARAPACK_ISA_GENERIC)
        case .avx2: return Int32(ARAPACK_ISA_AVX2)
        case .avx512: return Int32(ARAPACK_ISA_AVX512)
        }
    }

    init(code: Int32) {
        switch code {
        case Int32(ARAPACK_ISA_AVX512): self = .avx512
        case Int32(ARAPACK_ISA_AVX2): self = .avx2
        default: self = .generic
        }
    }
}
