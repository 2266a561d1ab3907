#!/usr/bin/env python3
"""Writes a full-size AraFusion training checkpoint as the training script saves it:
{"model": state_dict (tied: one storage), "optimizer": AdamW state after one real step, "step", "config"}.
381,478,912 parameters; with both AdamW moments the file is ~4.6 GB.

    python Benchmarks/make_full_size_checkpoint.py /tmp/arapack-bench/full_training.pt
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arafusion_shapes import FULL  # noqa: E402


def main():
    out = sys.argv[1]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    torch.manual_seed(0)
    config = dict(FULL, dropout=0.0, activation="gelu", causal=True, layer_norm_eps=1e-5)
    model = ARBaseline(**config)
    n = sum(p.numel() for p in model.parameters())
    assert n == 381_478_912, n
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, config["vocab_size"], (1, 16))
    loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    loss.backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 1, "config": config,
                "train_loss": float(loss.detach())}, out)
    print(f"{out}: {n:,} parameters, {os.path.getsize(out):,} bytes")


if __name__ == "__main__":
    main()
