import ArapackFormats
import ArapackTensor
#if canImport(Glibc)
import Glibc
#endif

/// Release-build benchmark driver: `arapack-bench read-model CHECKPOINT` opens any source arapack reads and
/// reads every model tensor's bytes once (a NaN/Inf scan), printing the totals. Timed from outside by
/// Benchmarks/bench_checkpoint.py.
let arguments = CommandLine.arguments
guard arguments.count == 3, arguments[1] == "read-model" else {
    print("usage: arapack-bench read-model SOURCE")
    exit(64)
}
do {
    let source = try SourceDetection.open(arguments[2])
    var bytes = 0
    var nonFinite = 0
    for name in source.tensorNames {
        let t = try source.tensor(named: name)
        nonFinite += t.nonFiniteCount()
        bytes += t.byteCount
    }
    print("\(source.tensorNames.count) tensors, \(bytes) bytes, \(nonFinite) non-finite")
} catch {
    print("error: \(error)")
    exit(2)
}
