#!/usr/bin/env python3
"""Issue 6 benchmark: the reference forward pass at full size (381M, tied) on 1 × 128 and 1 × 512 tokens,
release build, beside PyTorch's CPU eval forward of the same weights (`ARBaseline.eval()`, no_grad,
all cores) and beside cblas_sgemm's own throughput on this machine's GEMM shapes. Forward times exclude
loading (one warm-up, then the median of several runs, each side timing itself in-process).

    swift build -c release --product arapack-bench
    ROUNDS=7 python Benchmarks/bench_forward.py [/tmp/arapack-bench]     # needs torch; ROUNDS defaults to 5
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
BENCH = os.path.join(ROOT, ".build/release/arapack-bench")


def flops(c, length):
    d, f = c["d_model"], c["d_ff"]
    return length * (c["n_layers"] * (2 * 4 * d * d + 2 * 2 * d * f + 4 * length * d) + 2 * d * c["vocab_size"])


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full_training.pt", "make_full_size_checkpoint.py")
    torch.set_num_threads(os.cpu_count())
    ck = torch.load(path, mmap=True, weights_only=True)
    config = ck["config"]
    model = ARBaseline(**config).eval()
    model.load_state_dict(ck["model"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cores: {os.cpu_count()}")
    for m, n, k in [(128, 4096, 1024), (512, 4096, 1024), (128, 76800, 1024), (512, 76800, 1024)]:
        repeats = max(5, int(50e9 / (2 * m * n * k)))  # about half a second of each, so a short hiccup does not decide it
        print(subprocess.run([BENCH, "sgemm", str(m), str(n), str(k), str(repeats)], capture_output=True, text=True, check=True).stdout.strip())
    # Rounds alternate the two sides, so that both see the same state of this shared machine (its speed
    # drifts by ±8% over minutes); each round's ratio compares runs made seconds apart.
    rounds = int(os.environ.get("ROUNDS", "5"))
    for length, runs in [(128, 7), (512, 5)]:
        ids = torch.randint(0, config["vocab_size"], (1, length), generator=torch.Generator().manual_seed(0))
        ours, theirs = [], []
        for _ in range(rounds):
            out = subprocess.run([BENCH, "forward", path, str(length), str(runs)], capture_output=True, text=True, check=True).stdout
            ours.append(float(out.split("median ")[1].split(" s")[0]))
            times = []
            with torch.no_grad():
                model(ids)
                for _ in range(runs):
                    t0 = time.perf_counter()
                    model(ids)
                    times.append(time.perf_counter() - t0)
            theirs.append(statistics.median(times))
            print(f"  1x{length} round: arapack {ours[-1]:.3f} s, torch {theirs[-1]:.3f} s, speed ratio {theirs[-1] / ours[-1]:.3f}")
        g = flops(config, length) / 1e9
        a, b = statistics.median(ours), statistics.median(theirs)
        ratios = sorted(t / o for o, t in zip(ours, theirs))
        print(f"arapack forward 1x{length}: median {a:.3f} s ({min(ours):.3f}-{max(ours):.3f}), {g / a:.1f} GFLOP/s ({g:.1f} GFLOP)")
        print(f"torch   forward 1x{length}: median {b:.3f} s ({min(theirs):.3f}-{max(theirs):.3f}), {g / b:.1f} GFLOP/s")
        print(f"speed ratio torch/arapack per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
