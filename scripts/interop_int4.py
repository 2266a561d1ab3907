#!/usr/bin/env python3
"""An int4 (W4A16, pack-quantized) bundle holds what compressed-tensors' own compressor makes of the source's weights.

    python scripts/interop_int4.py BUNDLE SOURCE.pt

SOURCE.pt is the training checkpoint the bundle was made from ({"model": state_dict, "config": {...}}). For every
nn.Linear module of ARBaseline (Fixtures/arafusion.py) that the bundle's quantization_config does not ignore (found by
torch's module types, not by name), the weight in float32 goes through compressed-tensors alone:
- the scale and zero point from `calculate_qparams` over each group's (or row's) min and max, which is what a
  min-max observer feeds it (compressed-tensors' `compute_dynamic_scales_and_zp` does the same for groups);
- `PackedQuantizationCompressor.compress` with the QuantizationScheme built from the bundle's own config group;
and its `weight_packed`, `weight_scale` and `weight_shape` must equal the bundle's tensors in dtype, shape and bytes.
config.json's quantization_config must parse (compressed-tensors' QuantizationConfig) to its W4A16 preset's weights,
with the bundle's group size (or per channel).
The ignored modules' weights must be stored unquantized. Prints one line a check; exits 1 on any failure.
"""
import json
import os
import sys

import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme, preset_name_to_scheme
from compressed_tensors.quantization.utils.helpers import calculate_qparams
from safetensors import safe_open

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

failures = 0


def check(ok, what):
    global failures
    print(("ok    " if ok else "FAIL  ") + what)
    failures += 0 if ok else 1


def compress(weight, scheme):
    """compressed-tensors' tensors for one float32 weight [rows, cols]."""
    args = scheme.weights
    if args.strategy == "group":
        grouped = weight.unflatten(-1, (weight.shape[-1] // args.group_size, args.group_size))
        lo, hi = grouped.amin(dim=-1), grouped.amax(dim=-1)
    else:
        lo, hi = weight.amin(dim=-1, keepdim=True), weight.amax(dim=-1, keepdim=True)
    scale, zero_point = calculate_qparams(lo, hi, args)
    state = {"weight": weight, "weight_scale": scale, "weight_zero_point": zero_point}
    return PackedQuantizationCompressor.compress(state, scheme)


def main():
    bundle, source_path = sys.argv[1], sys.argv[2]
    hf = json.load(open(os.path.join(bundle, "config.json")))
    q = hf["quantization_config"]
    check(q["format"] == "pack-quantized", f"quantization_config format {q['format']}")
    group = q["config_groups"]["group_0"]
    scheme = QuantizationScheme(targets=group["targets"], weights=group["weights"], format=group["format"])
    # compressed-tensors reads the config as W4A16 (its preset, with the bundle's group size or per channel).
    parsed = QuantizationConfig.model_validate(q).config_groups["group_0"]
    preset = preset_name_to_scheme("W4A16", ["Linear"]).weights
    if scheme.weights.strategy == "group":
        preset = preset.model_copy(update={"group_size": scheme.weights.group_size})
    else:
        preset = preset.model_copy(update={"strategy": "channel", "group_size": None})
    check(parsed.weights == preset and parsed.input_activations is None and parsed.format == "pack-quantized",
          f"quantization_config reads as compressed-tensors' W4A16 preset ({parsed.weights.strategy}, group size {parsed.weights.group_size})")
    print(f"compressed-tensors scheme: {scheme.weights.num_bits} bits, {scheme.weights.strategy}, group size {scheme.weights.group_size}")

    stored = {}
    for name in sorted(os.listdir(bundle)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(bundle, name), "pt") as f:
                stored.update({k: f.get_tensor(k) for k in f.keys()})

    ck = torch.load(source_path, weights_only=True)
    model = ARBaseline(**ck["config"])  # the causal flag only masks attention; the modules are the same
    model.load_state_dict(ck["model"])
    ignored = set(q["ignore"])
    compared = 0
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module_name == "lm_head":
            continue
        release = "model." + module_name
        weight = module.weight.detach().float().contiguous()
        if release in ignored:
            check(release + ".weight" in stored and release + ".weight_packed" not in stored, f"{release} is ignored and stored unquantized")
            continue
        expected = compress(weight, scheme)
        for part in ("weight_packed", "weight_scale", "weight_shape"):
            mine, theirs = stored.get(release + "." + part), expected[part]
            same = (mine is not None and mine.dtype == theirs.dtype and tuple(mine.shape) == tuple(theirs.shape)
                    and torch.equal(mine.contiguous().view(torch.uint8), theirs.contiguous().view(torch.uint8)))
            detail = "" if same else (f": missing" if mine is None else f": {mine.dtype} {tuple(mine.shape)} vs {theirs.dtype} {tuple(theirs.shape)}")
            if not same and mine is not None and mine.shape == theirs.shape and mine.dtype == theirs.dtype:
                differ = (mine != theirs).nonzero()
                detail += f", {len(differ)} element(s) differ, first at {differ[0].tolist()}: {mine[tuple(differ[0])].item()} vs {theirs[tuple(differ[0])].item()}"
            check(same, f"{release}.{part} is compressed-tensors' own bytes ({theirs.dtype} {tuple(theirs.shape)}){detail}")
        compared += 1
    check(compared > 0, f"{compared} quantized nn.Linear weights compared")
    extra = [k for k in stored if k.endswith(("_packed", "_scale", "_shape")) and k.rsplit(".", 1)[0] in ignored]
    check(not extra, f"no quantized tensors for ignored modules {extra[:3]}")
    print("ok" if failures == 0 else f"{failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
