#!/usr/bin/env python3
"""Issue 2 benchmark: `arapack inspect` and a full validate + SHA-256 pass on a full-size float32
safetensors file, beside the PyTorch + safetensors equivalents, on the same machine, same session.

    swift build -c release --product arapack
    python Benchmarks/bench_safetensors.py [/tmp/arapack-bench]    # needs torch, safetensors, numpy

Files are read from the page cache (a warm-up run precedes the measured runs).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, measure, row  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.path.join(ROOT, ".build/release/arapack")

TORCH_INSPECT = """
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="pt") as f:
    rows = [(k, f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()]
print(len(rows))
"""

TORCH_VALIDATE_HASH = """
import hashlib, sys, torch
from safetensors.torch import load_file
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(64 << 20):
        h.update(chunk)
tensors = load_file(sys.argv[1])
bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors.values() if t.is_floating_point())
print(h.hexdigest(), bad)
"""


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full.safetensors", "make_full_size_safetensors.py")
    size = os.path.getsize(path)
    py = sys.executable
    print(row("arapack inspect", measure([ARAPACK, "inspect", path], runs=10)))
    print(row("arapack inspect --json", measure([ARAPACK, "inspect", path, "--json"], runs=10)))
    print(row("python: safe_open + list dtypes/shapes (torch)", measure([py, "-c", TORCH_INSPECT, path], runs=5)))
    print(row("arapack inspect --check-data (validate+SHA-256+NaN scan)", measure([ARAPACK, "inspect", path, "--check-data"], runs=5), size))
    print(row("python: hashlib sha256 + load_file + isfinite (torch)", measure([py, "-c", TORCH_VALIDATE_HASH, path], runs=3), size))


if __name__ == "__main__":
    main()
