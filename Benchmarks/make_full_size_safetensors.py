#!/usr/bin/env python3
"""Writes a full-size (381,478,912 parameters, ~1.53 GB) float32 release-style safetensors file with
the real model's tensor names and shapes, filled with seeded random values.

    python Benchmarks/make_full_size_safetensors.py /tmp/arapack-bench/full.safetensors
"""
import math
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arafusion_shapes import FULL, release_shapes  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    rng = np.random.default_rng(0)
    tensors = {}
    for name, shape in release_shapes(**FULL).items():
        scale = 1.0 / math.sqrt(shape[-1])
        tensors[name] = (rng.standard_normal(shape, dtype=np.float32) * scale) if len(shape) == 2 else np.zeros(shape, np.float32)
    n = sum(t.size for t in tensors.values())
    assert n == 381_478_912, n
    save_file(tensors, out, metadata={"format": "pt", "model.lm_head.weight": "model.token_embedding.weight"})
    print(f"{out}: {len(tensors)} tensors, {n:,} parameters, {os.path.getsize(out):,} bytes")


if __name__ == "__main__":
    main()
