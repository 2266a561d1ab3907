#!/usr/bin/env python3
"""`arapack run` at full size on 1 × 128 tokens, the whole process (start, map the 4.6 GB checkpoint, forward pass,
top-k and the logits' SHA-256, exit), beside PyTorch's forward alone on the same ids (`ARBaseline.eval()`, no_grad, all
cores, weights already loaded in this process, median of 3): the comparison issue 33 makes. Rounds alternate the two
sides (this VM drifts by ±20% over minutes); each round's ratio compares runs made seconds apart.

    swift build -c release --scratch-path .build-rel --product arapack
    ROUNDS=5 python Benchmarks/bench_run.py [/tmp/arapack-bench] [ARAPACK]   # needs torch; ARAPACK: .build-rel/release/arapack
"""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402
from harness import input_file, run_once  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full_training.pt", "make_full_size_checkpoint.py")
    arapack = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, ".build-rel", "release", "arapack")
    rounds = int(os.environ.get("ROUNDS", "5"))
    ck = torch.load(path, mmap=True, weights_only=True)
    model = ARBaseline(**ck["config"]).eval()
    model.load_state_dict(ck["model"])
    ids = torch.randint(0, ck["config"]["vocab_size"], (1, 128), generator=torch.Generator().manual_seed(0))
    command = [arapack, "run", path, "--ids", ",".join(str(int(i)) for i in ids[0])]

    def torch_forward():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            with torch.no_grad():
                model(ids)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    torch_forward()
    run_once(command)
    ratios, walls, forwards = [], [], []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {arapack}", flush=True)
    for r in range(rounds):
        sides = ["arapack", "torch"] if r % 2 == 0 else ["torch", "arapack"]
        for side in sides:
            if side == "arapack":
                walls.append(run_once(command)["wall"])
            else:
                forwards.append(torch_forward())
        ratios.append(forwards[-1] / walls[-1])
        print(f"round {r + 1}: arapack run (whole process) {walls[-1]:.3f} s, PyTorch forward alone {forwards[-1]:.3f} s, "
              f"PyTorch / arapack {ratios[-1]:.3f}", flush=True)
    print(f"median: arapack run {statistics.median(walls):.3f} s, PyTorch forward {statistics.median(forwards):.3f} s, "
          f"ratio {statistics.median(ratios):.3f} (target 1.25)")


if __name__ == "__main__":
    main()
