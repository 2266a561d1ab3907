#!/usr/bin/env python3
"""Golden logits from real PyTorch (versions in ../requirements.txt): tiny AraFusion twins written from
docs/model-family.md (`ARBaseline.eval()`), each saved as a training checkpoint plus a golden file.

    python Fixtures/golden/generate.py

For each twin NAME: NAME.pt ({"model", "config", "step"}) and NAME.golden.safetensors holding `ids`
(I64 [N, L]) and `logits` (F32 [N, L, V]) as docs/bundle.md defines a golden file, `__metadata__` naming
the model. Twins: AR GELU, AR ReLU, MDLM (bidirectional), and an odd-sized AR (3 layers, d 96,
6 heads, FFN 200, vocab 100, eps 1e-6), and `ar_small_scale`: eps 1e-6 with embeddings scaled by 0.002 so
the first LayerNorms see variances near eps (a wrong epsilon shows in its logits), and `ar_long`: 150
positions, so causal attention runs in several query blocks, the last one partial.
"""
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from arafusion import tiny_model  # noqa: E402

TWINS = {
    "ar_gelu": dict(seed=10),
    "ar_relu": dict(seed=11, activation="relu"),
    "mdlm_gelu": dict(seed=12, causal=False),
    "ar_odd": dict(seed=13, n_layers=3, d_model=96, n_heads=6, d_ff=200, vocab_size=100, max_seq_len=20, layer_norm_eps=1e-6),
    "ar_small_scale": dict(seed=14, layer_norm_eps=1e-6),
    "ar_long": dict(seed=15, max_seq_len=150),
}
SCALED = {"ar_small_scale": 0.002}
PROBES = 3


def main():
    for name, spec in TWINS.items():
        model, config = tiny_model(**spec)
        if name in SCALED:
            with torch.no_grad():
                model.token_embedding.weight.mul_(SCALED[name])
                model.position_embedding.weight.mul_(SCALED[name])
        model.eval()
        torch.save({"model": model.state_dict(), "config": config, "step": 100}, os.path.join(HERE, name + ".pt"))
        g = torch.Generator().manual_seed(1000 + spec["seed"])
        ids = torch.randint(0, config["vocab_size"], (PROBES, config["max_seq_len"]), generator=g)
        with torch.no_grad():
            logits = model(ids).float().contiguous()
        save_file({"ids": ids.to(torch.int64), "logits": logits}, os.path.join(HERE, name + ".golden.safetensors"),
                  metadata={"model": name, "generator": "Fixtures/golden/generate.py", "torch": torch.__version__})
        print(f"{name}: logits {tuple(logits.shape)}, |max| {logits.abs().max():.3f}")


if __name__ == "__main__":
    main()
