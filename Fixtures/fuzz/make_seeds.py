#!/usr/bin/env python3
"""Small fuzzing seeds made by real PyTorch (versions in Fixtures/requirements.txt).

The checkpoint fixtures elsewhere are whole tiny models (100-300 KB); under AddressSanitizer the zip,
torch, pickle and dcp fuzz targets run a few hundred of those a second. These seeds carry the same
structures (training dict, shared storage, views, storage offsets, every float dtype, DCP metadata of
sharded and plain tensors) in 1-6 KB, so libFuzzer mutates them tens of times faster.

    python Fixtures/fuzz/make_seeds.py
"""
import os
import sys
import tempfile
import zipfile

import torch
import torch.distributed.checkpoint as dcp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from fixturelib import fresh_dirs  # noqa: E402

SEEDS = os.path.join(HERE, "seeds")


def checkpoints():
    g = torch.Generator().manual_seed(11)
    emb = torch.randn(6, 4, generator=g)
    lin = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-3)
    lin(torch.randn(2, 4, generator=g)).sum().backward()
    opt.step()
    base = torch.arange(12, dtype=torch.float32)
    return {
        # The tied pair as one storage, the way a state dict holds it.
        "tied": {"tok_emb.weight": emb, "lm_head.weight": emb, "ln.bias": torch.zeros(4)},
        # A training dict: model under "model", AdamW state, step, config, losses.
        "training": {"model": lin.state_dict(), "optimizer": opt.state_dict(), "step": 3,
                     "config": {"d_model": 4, "n_heads": 1, "causal": True}, "train_loss": 2.5},
        # Views: a transpose, a storage offset, a strided slice of one storage.
        "views": {"t": base.view(3, 4).t(), "off": base[5:9], "step": base[::3]},
        "dtypes": {"f16": torch.randn(3, generator=g).half(), "bf16": torch.randn(3, generator=g).bfloat16(),
                   "f64": torch.randn(2, generator=g).double(), "i8": torch.tensor([-3, 7], dtype=torch.int8),
                   "i64": torch.tensor([1, 2]), "b": torch.tensor([True, False]), "u8": torch.tensor([9], dtype=torch.uint8)},
        "module_prefix": {"module._orig_mod.ln.weight": torch.ones(2), "module._orig_mod.ln.bias": torch.zeros(2)},
    }


def main():
    torch.manual_seed(0)
    dirs = {k: os.path.join(SEEDS, k) for k in ("torch", "pickle", "dcp")}
    fresh_dirs(*dirs.values())
    for name, value in checkpoints().items():
        path = os.path.join(dirs["torch"], name + ".pt")
        torch.save(value, path)
        with zipfile.ZipFile(path) as z:
            pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
            with open(os.path.join(dirs["pickle"], name + ".pkl"), "wb") as f:
                f.write(z.read(pkl))
    # DCP metadata (single process): plain tensors, a bf16 one, nested optimizer-style state, a scalar step.
    with tempfile.TemporaryDirectory() as tmp:
        lin = torch.nn.Linear(3, 2)
        state = {"model": lin.state_dict(), "extra": {"h": torch.ones(2, 2).bfloat16()}, "step": 1}
        dcp.save(state, checkpoint_id=tmp, no_dist=True)
        with open(os.path.join(tmp, ".metadata"), "rb") as src:
            meta = src.read()
    for d in (dirs["dcp"], dirs["pickle"]):
        with open(os.path.join(d, "metadata.pkl" if d == dirs["pickle"] else "metadata"), "wb") as f:
            f.write(meta)
    for d in dirs.values():
        for n in sorted(os.listdir(d)):
            print(os.path.join(os.path.relpath(d, HERE), n), os.path.getsize(os.path.join(d, n)))


if __name__ == "__main__":
    main()
