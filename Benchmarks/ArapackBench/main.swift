import ArapackFormats
import ArapackModel
import ArapackRelease
import ArapackTensor
import CKernels
#if canImport(Glibc)
import Glibc
#endif

/// Release-build benchmark driver.
///   arapack-bench read-model SOURCE            read every model tensor's bytes once (a NaN/Inf scan)
///   arapack-bench forward SOURCE L REPEATS [N] time the reference forward pass on N × L tokens (N = 1 unless given;
///                                              after one warm-up, whose time is printed as the first pass)
///   arapack-bench gemm M N K REPEATS           the forward pass's own invariant GEMM (arapack_gemm_nt, one thread,
///                                              the instruction set ARAPACK_ISA picks) on the same product
/// Whole-process timing comes from Benchmarks/*.py; `forward` and `gemm` also print their own timings. OpenBLAS's
/// sgemm, the GEMM's anchor, is Benchmarks/kernels/sgemm_bench.c (arapack does not link OpenBLAS).
let arguments = CommandLine.arguments

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// The median wall time of `repeats` runs of `body` after a first run, and that first run's time (its page faults on
/// mapped weights and first touches of scratch included).
func medianTime(_ repeats: Int, _ body: () throws -> Void) rethrows -> (median: Double, first: Double) {
    let start = now()
    try body()
    let first = now() - start
    var times: [Double] = []
    for _ in 0..<repeats {
        let t0 = now()
        try body()
        times.append(now() - t0)
    }
    return (median(times), first)
}

do {
    switch (arguments.count, arguments.count > 1 ? arguments[1] : "") {
    case (3, "read-model"):
        let source = try SourceDetection.open(arguments[2])
        var bytes = 0
        var nonFinite = 0
        for name in source.tensorNames {
            let t = try source.tensor(named: name)
            nonFinite += t.nonFiniteCount()
            bytes += t.byteCount
        }
        print("\(source.tensorNames.count) tensors, \(bytes) bytes, \(nonFinite) non-finite")
    case (5, "forward"), (6, "forward"):
        let model = try ReleaseModel(path: arguments[2])
        let length = Int(arguments[3])!, repeats = Int(arguments[4])!, batch = arguments.count == 6 ? Int(arguments[5])! : 1
        let forward = try ForwardPass(model)
        let ids = Parity.probes(count: batch, length: length, vocab: model.config.vocabSize, seed: 0)
        let (t, first) = try medianTime(repeats) { _ = try forward.logits(ids) }
        let c = model.config
        let d = Double(c.hiddenSize), f = Double(c.intermediateSize), l = Double(length)
        let flops = Double(batch) * l * (Double(c.layers) * (2 * 4 * d * d + 2 * 2 * d * f + 4 * l * d) + 2 * d * Double(c.vocabSize))
        print("forward \(batch)x\(length) (\(KernelISA.active), \(forward.threads) threads): median \(String(t)) s, \(flops / t / 1e9) GFLOP/s (\(flops / 1e9) GFLOP); first pass \(String(first)) s")
    case (6, "gemm"):
        let m = Int(arguments[2])!, n = Int(arguments[3])!, k = Int(arguments[4])!, repeats = Int(arguments[5])!
        try KernelISA.configureFromEnvironment()
        let a = (0..<m * k).map { Float($0 % 7) * 0.25 }, b = (0..<n * k).map { Float($0 % 5) * 0.5 }
        let packed = arapack_packed_rows(m)
        var xp = [Float](repeating: 0, count: packed * k), t = [Float](repeating: 0, count: packed * n)
        func run() {
            arapack_pack_rows(a, k, m, k, &xp)
            arapack_gemm_nt(xp, m, k, b, k, n, &t, packed)
        }
        let time = medianTime(repeats, run).median
        print("gemm \(m)x\(n)x\(k) (\(KernelISA.active), one thread): median \(String(time)) s, \(2 * Double(m) * Double(n) * Double(k) / time / 1e9) GFLOP/s")
    default:
        print("usage: arapack-bench read-model SOURCE | forward SOURCE L REPEATS [N] | gemm M N K REPEATS")
        exit(64)
    }
} catch {
    print("error: \(error)")
    exit(2)
}
