#!/usr/bin/env bash
# Compares CKernels' loops built as SwiftPM builds them in release (-O2, what a package that depends on arapack
# gets: SwiftPM refuses unsafeFlags there) against -O3 (what Package.swift asked for with unsafeFlags before).
# Alternates the two builds for ROUNDS rounds and prints each kernel's median over the rounds.
#   bash Benchmarks/kernels/compare_flags.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-5}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for level in O2 O3; do
    clang -$level -g -ISources/CKernels/include Sources/CKernels/*.c Benchmarks/kernels/kernels_bench.c -lm -o "$out/bench-$level"
done
for r in $(seq "$rounds"); do
    for level in O2 O3; do "$out/bench-$level" | sed "s/^/$level /" >> "$out/results"; done
done
python3 - "$out/results" <<'PY'
import collections, statistics, sys
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    level, rest = line.split(" ", 1)
    name, ms = rest.rsplit(None, 2)[0].strip(), float(rest.rsplit(None, 2)[1])
    times[(name, level)].append(ms)
names = sorted({n for n, _ in times}, key=lambda n: list(times).index((n, "O2")))
print(f"{'kernel':24} {'-O2 ms':>9} {'-O3 ms':>9} {'O2/O3':>6}")
for n in names:
    a, b = statistics.median(times[(n, "O2")]), statistics.median(times[(n, "O3")])
    print(f"{n:24} {a:9.3f} {b:9.3f} {a / b:6.2f}")
PY
