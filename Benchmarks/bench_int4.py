#!/usr/bin/env python3
"""`arapack convert --dtype int4` (W4A16, groups of 128) from the full-size training checkpoint, beside PyTorch +
compressed-tensors doing the same job: torch.load (mmap), prefixes stripped, the tied head checked and dropped, each
layer's nn.Linear weight through compressed-tensors' `calculate_qparams` and `PackedQuantizationCompressor` (the other
matrices bf16, vectors and positions float32, as arapack stores them), `save_file`, config.json. Rounds alternate;
wall time and peak resident memory (wait4) of each whole process. Once, the two outputs' int4 tensors are compared
byte for byte.

    python Benchmarks/bench_int4.py FULL_CHECKPOINT.pt [ROUNDS]

FULL_CHECKPOINT.pt comes from Benchmarks/make_full_size_checkpoint.py; arapack is .build-rel/release/arapack (swift
build -c release --product arapack --scratch-path .build-rel); this Python needs torch, safetensors and
compressed-tensors 0.20.1."""
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TORCH_STATE_DICT, run_once  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARAPACK = os.path.join(ROOT, ".build-rel", "release", "arapack")
TORCH_CONVERT = """
import json, os, sys, torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils.helpers import calculate_qparams
from safetensors.torch import save_file
src, dst = sys.argv[1], sys.argv[2]
args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=128, dynamic=False)
scheme = QuantizationScheme(targets=["Linear"], weights=args, format="pack-quantized")
""" + TORCH_STATE_DICT + """out = {}
for k, v in sd.items():
    if k.startswith("transformer.layers.") and k.endswith((".out_proj.weight", ".linear1.weight", ".linear2.weight")):
        w = v.float()
        g = w.unflatten(-1, (w.shape[-1] // 128, 128))
        scale, zp = calculate_qparams(g.amin(dim=-1), g.amax(dim=-1), args)
        parts = PackedQuantizationCompressor.compress({"weight": w, "weight_scale": scale, "weight_zero_point": zp}, scheme)
        for part in ("weight_packed", "weight_scale", "weight_shape"):
            out["model." + k[:-len("weight")] + part] = parts[part].contiguous()
    else:
        wide = v.dim() == 1 or k == "position_embedding.weight"
        out["model." + k] = v.to(torch.float32 if wide else torch.bfloat16).contiguous()
os.makedirs(dst, exist_ok=True)
save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt", "model.lm_head.weight": "model.token_embedding.weight"})
c = ck["config"]
json.dump({"model_type": "arafusion_ar", "vocab_size": c["vocab_size"], "hidden_size": c["d_model"]}, open(os.path.join(dst, "config.json"), "w"))
"""


def same_int4(a, b):
    from safetensors import safe_open
    import torch
    with safe_open(os.path.join(a, "model.safetensors"), "pt") as fa, safe_open(os.path.join(b, "model.safetensors"), "pt") as fb:
        names = [k for k in fa.keys() if k.endswith(("_packed", "_scale", "_shape"))]
        assert sorted(names) == sorted(k for k in fb.keys() if k.endswith(("_packed", "_scale", "_shape"))), "names differ"
        for k in names:
            x, y = fa.get_tensor(k), fb.get_tensor(k)
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x.view(torch.uint8), y.view(torch.uint8)), k
    return len(names)


def main():
    checkpoint, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="bench-int4-", dir=os.path.dirname(os.path.abspath(checkpoint)))
    mine, theirs = os.path.join(work, "arapack"), os.path.join(work, "torch")
    times, peaks = {"arapack": [], "torch": []}, {"arapack": 0.0, "torch": 0.0}
    for i in range(rounds + 1):  # the first round warms the page cache and is not counted
        for side in (["arapack", "torch"] if i % 2 == 0 else ["torch", "arapack"]):
            dst = mine if side == "arapack" else theirs
            shutil.rmtree(dst, ignore_errors=True)
            os.sync()
            argv = ([ARAPACK, "convert", checkpoint, dst, "--dtype", "int4", "--no-source-digest", "--quiet"] if side == "arapack"
                    else [sys.executable, "-c", TORCH_CONVERT, checkpoint, dst])
            r = run_once(argv)
            if i > 0:
                times[side].append(r["wall"])
                peaks[side] = max(peaks[side], r["peak"])
            print(f"round {i} {side}: {r['wall']:.2f} s {r['peak']:.0f} MiB", flush=True)
        if i == 0:
            print(f"int4 tensors byte-identical: {same_int4(mine, theirs)}", flush=True)
    print("\n| | median | min | peak memory |\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} s | {min(ts):.2f} s | {peaks[name]:.0f} MiB |")
    ratios = [a / b for a, b in zip(times["arapack"], times["torch"])]
    print(f"\narapack / torch per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
