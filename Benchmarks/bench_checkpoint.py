#!/usr/bin/env python3
"""Issue 3 benchmark: a full-size (381M) training checkpoint with AdamW state (~4.6 GB): list its tensors,
and read every model tensor, with arapack and with torch.load(mmap=True, weights_only=True), same
machine, same session. Files come from the page cache (one warm-up run).

    swift build -c release --product arapack && swift build -c release --product arapack-bench   # (OpenBLAS not needed)
    python Benchmarks/bench_checkpoint.py [/tmp/arapack-bench]     # needs torch
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, measure, row  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.path.join(ROOT, ".build/release/arapack")
BENCH = os.path.join(ROOT, ".build/release/arapack-bench")

TORCH_LIST = """
import sys, torch
ck = torch.load(sys.argv[1], mmap=True, weights_only=True)
rows = [(k, v.dtype, tuple(v.shape)) for k, v in ck["model"].items()]
opt = sum(1 for s in ck["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v))
print(len(rows), opt)
"""

TORCH_READ = """
import sys, torch
ck = torch.load(sys.argv[1], mmap=True, weights_only=True)
bad = 0
for k, v in ck["model"].items():
    bad += int((~torch.isfinite(v)).sum())
print(len(ck["model"]), bad)
"""


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full_training.pt", "make_full_size_checkpoint.py")
    model_bytes = 381_478_912 * 4
    print(f"model tensors: {model_bytes:,} bytes")
    py = sys.executable
    print(row("arapack inspect (structure, tensor table, globals)", measure([ARAPACK, "inspect", path], runs=10)))
    print(row("torch.load(mmap, weights_only) + list model/optimizer", measure([py, "-c", TORCH_LIST, path], runs=5)))
    print(row("arapack-bench read-model (every model byte, NaN scan)", measure([BENCH, "read-model", path], runs=5), model_bytes))
    print(row("torch.load(mmap, weights_only) + isfinite per tensor", measure([py, "-c", TORCH_READ, path], runs=5), model_bytes))


if __name__ == "__main__":
    main()
