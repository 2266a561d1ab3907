#!/usr/bin/env bash
# The two speed targets that are only open on CPUs without AVX-512 (issue 33: `arapack run` ≥ 1.25× PyTorch's
# forward; issue 36: the bf16 release ≤ 0.55× of convert as it was), measured the way BENCHMARKS.md reports them, in
# one command. Run it on such a machine (AMD Zen 3, or any AVX2-only CPU) after scripts/test.sh has made the venv:
#     bash Benchmarks/avx2_targets.sh [WORK_DIR]        (default /tmp/arapack-bench; ~6 GB free, ~15 minutes)
# On a CPU with AVX-512 it holds both sides to AVX2 (ARAPACK_ISA=avx2 for arapack; ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA
# and MKL_ENABLE_INSTRUCTIONS for PyTorch), the nearest such a machine comes; say which in what you write down.
#   1. the CPU, and the FMA ceiling on one core and on every CPU at once (Benchmarks/kernels/fma_peak.c);
#   2. the GEMM alone on the model's shapes, one thread (arapack-bench gemm);
#   3. the forward pass on 1 × 128 tokens on one thread and on all, alternating (arapack-bench forward);
#   4. `arapack run` beside PyTorch's forward, ROUNDS=5 (Benchmarks/bench_run.py): issue 33's ratio;
#   5. the bf16 release beside convert as it was (a build of 8bb82a5), SETS=one, ROUNDS=3 (bench_release.py): issue 36's.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/arapack-bench}"
python="${ARAPACK_PYTHON:-/tmp/arapack-venv/bin/python}"
baseline_commit=8bb82a5
mkdir -p "$work"
[ -x "$python" ] || { echo "no Python with torch at $python: run scripts/test.sh once, or set ARAPACK_PYTHON" >&2; exit 2; }

echo "== 1. CPU"
grep -m1 "model name" /proc/cpuinfo
grep -m1 -E "^cpu family" /proc/cpuinfo; grep -m1 -E "^model\s" /proc/cpuinfo
lscpu | grep -E "^(Thread|Core|L2|L3)" || true
if grep -q -w avx512f /proc/cpuinfo; then
    echo "this CPU runs AVX-512: both sides are held to AVX2 below"
    export ARAPACK_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
else
    echo "AVX2 only (no AVX-512): the machine the targets name"
fi
clang -O2 -pthread -o "$work/fma_peak" Benchmarks/kernels/fma_peak.c
"$work/fma_peak"

echo "== building arapack and arapack-bench (release), and convert as it was ($baseline_commit)"
swift build -c release --product arapack --scratch-path .build-rel 2>&1 | tail -1
swift build -c release --product arapack-bench --scratch-path .build-rel 2>&1 | tail -1
baseline="$work/arapack-$baseline_commit"
if [ ! -x "$baseline" ]; then
    tree="$work/tree-$baseline_commit"
    rm -rf "$tree" && git worktree add --detach "$tree" "$baseline_commit" >/dev/null
    (cd "$tree" && swift build -c release --product arapack 2>&1 | tail -1)
    cp "$tree/.build/release/arapack" "$baseline"
    git worktree remove --force "$tree"
fi

checkpoint="$work/full_training.pt"
[ -f "$checkpoint" ] || "$python" Benchmarks/make_full_size_checkpoint.py "$checkpoint"

echo "== 2. the GEMM alone, one thread (GFLOP/s; compare with the one-core ceiling above)"
for shape in "512 3072 1024" "512 4096 1024" "512 1024 4096" "128 4096 1024" "512 76800 1024"; do
    # shellcheck disable=SC2086
    .build-rel/release/arapack-bench gemm $shape 5
done

echo "== 3. the forward pass on 1 × 128 tokens: one thread, then all (three rounds alternating)"
for round in 1 2 3; do
    ARAPACK_THREADS=1 .build-rel/release/arapack-bench forward "$checkpoint" 128 3
    .build-rel/release/arapack-bench forward "$checkpoint" 128 3
done

echo "== 4. issue 33: arapack run (whole process) beside PyTorch's forward alone; target ratio ≥ 1.25"
ROUNDS=5 "$python" Benchmarks/bench_run.py "$work" .build-rel/release/arapack

echo "== 5. issue 36: the bf16 release beside convert as it was; target ratio ≤ 0.55"
SETS=one BASELINE_ARAPACK="$baseline" "$python" Benchmarks/bench_release.py "$checkpoint" 3
