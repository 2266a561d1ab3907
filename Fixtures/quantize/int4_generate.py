#!/usr/bin/env python3
"""int4 (W4A16, pack-quantized) weights as compressed-tensors' own compressor writes them (versions in ../requirements.txt).

    python Fixtures/quantize/int4_generate.py

int4.safetensors: for the weight of every nn.Linear module of ARBaseline loaded from ../golden/ar_odd.pt but the tied
LM head (out_proj, linear1, linear2 of each layer, found by torch's module types), under its release name, the
`X_packed` (I32), `X_scale` (F32) and `X_shape` (I64) that `PackedQuantizationCompressor.compress` makes of the float32
weight with a symmetric 4-bit int scheme: `group8.` with one scale per 8 columns (96 and 200 columns take no larger
common group), and `channel.` with one scale per row. The scales come from compressed-tensors' `calculate_qparams`
over each group's min and max (what a min-max observer feeds it).
"""
import os
import sys

import compressed_tensors
import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils.helpers import calculate_qparams
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from arafusion import ARBaseline  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ck = torch.load(os.path.join(os.path.dirname(HERE), "golden", "ar_odd.pt"), weights_only=True)
    model = ARBaseline(**ck["config"])
    model.load_state_dict(ck["model"])
    out = {}
    for prefix, strategy, group in (("group8.", "group", 8), ("channel.", "channel", None)):
        args = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy=strategy, group_size=group, dynamic=False)
        scheme = QuantizationScheme(targets=["Linear"], weights=args, format="pack-quantized")
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or name == "lm_head":
                continue
            w = module.weight.detach().float().contiguous()
            x = w.unflatten(-1, (w.shape[-1] // group, group)) if group else w
            lo, hi = x.amin(dim=-1, keepdim=group is None), x.amax(dim=-1, keepdim=group is None)
            scale, zero_point = calculate_qparams(lo, hi, args)
            parts = PackedQuantizationCompressor.compress({"weight": w, "weight_scale": scale, "weight_zero_point": zero_point}, scheme)
            for part in ("weight_packed", "weight_scale", "weight_shape"):
                out[prefix + "model." + name + "." + part] = parts[part].contiguous()
    save_file(out, os.path.join(HERE, "int4.safetensors"),
              metadata={"torch": torch.__version__, "compressed-tensors": compressed_tensors.__version__, "source": "golden/ar_odd.pt"})
    print(f"int4: {len(out)} tensors")


if __name__ == "__main__":
    main()
