#!/usr/bin/env python3
"""The reference forward pass at full size (381M, tied) on 1 × 128 and 8 × 64 tokens, release build, beside
PyTorch's CPU eval forward of the same weights (`ARBaseline.eval()`, no_grad, all cores), and arapack's own
invariant GEMM on the forward pass's shapes, beside OpenBLAS's sgemm when SGEMM_BENCH names
Benchmarks/kernels/sgemm_bench.c built (arapack does not link OpenBLAS). Instruction sets the CPU does not run
are skipped.

Two measures, each in rounds that alternate the sides (this VM drifts by ±20% over minutes, so each round's ratio
compares runs made seconds apart):
- in-process: each side times its own forward after one warm-up, weights loaded (median of several runs);
- whole process: a fresh process that loads the checkpoint and runs the forward twice (a warm-up and one timed
  run on arapack's side, the same two on torch's), timed from outside, start to exit.

    swift build -c release --scratch-path .build-rel --product arapack-bench
    ROUNDS=5 python Benchmarks/bench_forward.py [/tmp/arapack-bench] [BUILD]   # needs torch; BUILD: .build-rel/release
"""
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402
from harness import input_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = [(1, 128), (8, 64)]

TORCH_PROCESS = """
import sys, torch
sys.path.insert(0, {fixtures!r})
from arafusion import ARBaseline
torch.set_num_threads({threads})
ck = torch.load({path!r}, mmap=True, weights_only=True)
model = ARBaseline(**ck["config"]).eval()
model.load_state_dict(ck["model"])
ids = torch.randint(0, ck["config"]["vocab_size"], ({n}, {length}), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    model(ids)
    model(ids)
"""


def flops(c, n, length):
    d, f = c["d_model"], c["d_ff"]
    return n * length * (c["n_layers"] * (2 * 4 * d * d + 2 * 2 * d * f + 4 * length * d) + 2 * d * c["vocab_size"])


def wall(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full_training.pt", "make_full_size_checkpoint.py")
    bench = os.path.join(ROOT, sys.argv[2] if len(sys.argv) > 2 else ".build-rel/release", "arapack-bench")
    threads = os.cpu_count()
    torch.set_num_threads(threads)
    ck = torch.load(path, mmap=True, weights_only=True)
    config = ck["config"]
    model = ARBaseline(**config).eval()
    model.load_state_dict(ck["model"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cores: {threads}")
    for m, n, k in [(128, 3072, 1024), (128, 4096, 1024), (128, 1024, 4096), (512, 4096, 1024), (512, 76800, 1024)]:
        repeats = max(5, int(50e9 / (2 * m * n * k)))  # about half a second of each
        for isa in ["avx512", "avx2"]:
            r = subprocess.run([bench, "gemm", str(m), str(n), str(k), str(repeats)], capture_output=True, text=True,
                               env=dict(os.environ, ARAPACK_ISA=isa))
            print(r.stdout.strip() if r.returncode == 0 else f"gemm {m}x{n}x{k} ({isa}): this CPU does not run it")
        if os.environ.get("SGEMM_BENCH"):
            print(subprocess.run([os.environ["SGEMM_BENCH"], str(m), str(n), str(k), str(repeats)], capture_output=True, text=True,
                                 check=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1")).stdout.strip())
    rounds = int(os.environ.get("ROUNDS", "5"))
    for n, length in SHAPES:
        ids = torch.randint(0, config["vocab_size"], (n, length), generator=torch.Generator().manual_seed(0))
        runs = 7
        ours, theirs, ours_whole, theirs_whole = [], [], [], []
        script = TORCH_PROCESS.format(fixtures=os.path.join(ROOT, "Fixtures"), threads=threads, path=path, n=n, length=length)
        for _ in range(rounds):
            out = subprocess.run([bench, "forward", path, str(length), str(runs), str(n)], capture_output=True, text=True, check=True).stdout
            ours.append(float(out.split("median ")[1].split(" s")[0]))
            times = []
            with torch.no_grad():
                model(ids)
                for _ in range(runs):
                    t0 = time.perf_counter()
                    model(ids)
                    times.append(time.perf_counter() - t0)
            theirs.append(statistics.median(times))
            ours_whole.append(wall([bench, "forward", path, str(length), "1", str(n)]))
            theirs_whole.append(wall([sys.executable, "-c", script]))
            print(f"  {n}x{length} round: in-process arapack {ours[-1]:.3f} s, torch {theirs[-1]:.3f} s ({theirs[-1] / ours[-1]:.2f}x); "
                  f"whole process arapack {ours_whole[-1]:.2f} s, torch {theirs_whole[-1]:.2f} s ({theirs_whole[-1] / ours_whole[-1]:.2f}x)")
        g = flops(config, n, length) / 1e9
        for label, a, b in [("in-process", ours, theirs), ("whole process", ours_whole, theirs_whole)]:
            ratios = sorted(t / o for o, t in zip(a, b))
            print(f"{n}x{length} {label}: arapack median {statistics.median(a):.3f} s, torch {statistics.median(b):.3f} s"
                  + (f" ({g / statistics.median(a):.0f} vs {g / statistics.median(b):.0f} GFLOP/s)" if label == "in-process" else "")
                  + f"; speed ratio torch/arapack per round {', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
