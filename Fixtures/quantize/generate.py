#!/usr/bin/env python3
"""Reference casts and int8 quantization computed by real PyTorch (versions in ../requirements.txt).

    python Fixtures/quantize/generate.py

casts.safetensors:
  `source` F32: random normals at many scales plus the hard cases: values exactly halfway between two
  bf16 / f16 neighbours (ties, both parities), bf16 and f16 subnormals and the smallest normals, ±0,
  ±inf, quiet and signalling NaNs with payloads and both signs, the largest finite floats.
  `bf16` = source.to(torch.bfloat16); `f16_source` = the subset below the float16 range (|x| < 65520,
  and non-finite), `f16` = f16_source.to(torch.float16).
int8.safetensors: for the weight of every nn.Linear module of ARBaseline loaded from ../golden/ar_odd.pt
  but the tied LM head (out_proj, linear1, linear2 of each layer: what compressed-tensors quantizes; found by
  torch's module types, not by name), under its release name, `X` (I8) and `X_scale` (F32) per output channel, and `group8.X` / `group8.X_scale` with one scale
  per 8 columns, by the rule scale = amax(|x|)/127 (1 for all-zero rows), q = round(x/scale).clamp(-127, 127).
"""
import os

import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arafusion import ARBaseline  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def f32(bits):
    return torch.tensor(bits, dtype=torch.int64).to(torch.int32).view(torch.float32)


def hard_cases():
    bits = [
        0x3F808000, 0x3F818000, 0xBF808000, 0x3F80C000, 0x3F807FFF, 0x3F808001,  # bf16 ties (even/odd) and neighbours
        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,                          # f16 ties (even/odd) and neighbours
        0x00000001, 0x00400000, 0x007FFFFF, 0x00800000, 0x80000001,              # f32 subnormals, smallest normal
        0x33800000, 0x33C00000, 0x387FC000, 0x38800000, 0x33000000, 0x337FFFFF,  # f16 subnormal range and its edges
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000,                          # ±0, ±inf
        0x7FC00000, 0xFFC00000, 0x7FC12345, 0x7F800001, 0xFF812345, 0x7FFFFFFF, 0xFFFFFFFF,  # NaNs
        0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x477FEFFF, 0x477FF000, 0xC77FEFFF,  # largest floats, f16 max edges
    ]
    return f32(bits)


def main():
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([1e-8, 1e-5, 1e-3, 0.1, 1.0, 30.0, 1e3, 6e4, 1e20])
    normals = (torch.randn(len(scales), 4000, generator=g) * scales[:, None]).reshape(-1)
    source = torch.cat([hard_cases(), normals])
    small = source[~(source.abs() >= 65520) | ~torch.isfinite(source)]
    save_file({"source": source, "bf16": source.to(torch.bfloat16), "f16_source": small, "f16": small.to(torch.float16)},
              os.path.join(HERE, "casts.safetensors"), metadata={"torch": torch.__version__})

    ck = torch.load(os.path.join(os.path.dirname(HERE), "golden", "ar_odd.pt"), weights_only=True)
    model = ARBaseline(**ck["config"])
    model.load_state_dict(ck["model"])
    linear = [m + ".weight" for m, module in model.named_modules() if isinstance(module, torch.nn.Linear) and m != "lm_head"]
    out = {}
    for name in linear:
        w = ck["model"][name]
        for prefix, group in (("", None), ("group8.", 8)):
            x = w if group is None else w.reshape(w.shape[0], -1, group)
            amax = x.abs().amax(dim=-1, keepdim=True)
            scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
            q = torch.round(x / scale).clamp(-127, 127).to(torch.int8)
            out[prefix + "model." + name] = q.reshape(w.shape).contiguous()
            out[prefix + "model." + name + "_scale"] = scale.reshape(w.shape[0], -1).contiguous()
    save_file(out, os.path.join(HERE, "int8.safetensors"), metadata={"torch": torch.__version__, "source": "golden/ar_odd.pt"})
    print(f"casts: {source.numel()} values; int8: {len(out)} tensors")


if __name__ == "__main__":
    main()
