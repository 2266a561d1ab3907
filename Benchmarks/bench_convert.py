#!/usr/bin/env python3
"""Issues 5 and 7 benchmark: convert a full-size (381M) training checkpoint with AdamW state (~4.6 GB) into
a release bundle, float32, bf16 and int8 (per channel), archive off; GB/s are of model input (1.53 GB): arapack beside a PyTorch + safetensors script doing the
same job (torch.load mmap, strip prefixes, check and drop the tied head, cast, save_file, config.json,
sha256 of the outputs). Whole-process wall time and peak RSS, same machine, same session, files from the
page cache (one warm-up run). arapack also hashes the 4.6 GB source for the manifest (the script does not).

    swift build -c release --product arapack
    python Benchmarks/bench_convert.py [/tmp/arapack-bench] [f32,bf16,int8]     # needs torch and safetensors
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import TORCH_STATE_DICT, input_file, measure, row  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.path.join(ROOT, ".build/release/arapack")

TORCH_CONVERT = """
import hashlib, json, os, sys, torch
from safetensors.torch import save_file
src, dst, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
""" + TORCH_STATE_DICT + """out = {}
for k, v in sd.items():
    # int8: the weights of the layers' nn.Linear modules, as arapack quantizes them (what compressed-tensors loads)
    if dtype == "int8" and k.startswith("transformer.layers.") and k.endswith((".out_proj.weight", ".linear1.weight", ".linear2.weight")):
        amax = v.abs().amax(dim=1, keepdim=True)
        scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))
        out["model." + k] = torch.round(v / scale).clamp(-127, 127).to(torch.int8).contiguous()
        out["model." + k + "_scale"] = scale.contiguous()
    elif dtype == "int8":  # the other matrices (tied embedding, in_proj_weight) bf16; vectors and positions f32
        wide = v.dim() == 1 or k == "position_embedding.weight"
        out["model." + k] = v.to(torch.float32 if wide else torch.bfloat16).contiguous()
    else:
        out["model." + k] = v.to(getattr(torch, dtype)).contiguous()
os.makedirs(dst, exist_ok=True)
save_file(out, os.path.join(dst, "model.safetensors"),
          metadata={"format": "pt", "model.lm_head.weight": "model.token_embedding.weight"})
c = ck["config"]
json.dump({"model_type": "arafusion_ar", "vocab_size": c["vocab_size"], "hidden_size": c["d_model"],
           "num_hidden_layers": c["n_layers"], "num_attention_heads": c["n_heads"], "tie_word_embeddings": True},
          open(os.path.join(dst, "config.json"), "w"), indent=2)
files = {}
for name in sorted(os.listdir(dst)):
    h = hashlib.sha256()
    with open(os.path.join(dst, name), "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    files[name] = h.hexdigest()
json.dump(files, open(os.path.join(dst, "manifest.json"), "w"), indent=2)
"""


FSYNC = """
for name in os.listdir(dst):
    fd = os.open(os.path.join(dst, name), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench"
    path = input_file(work, "full_training.pt", "make_full_size_checkpoint.py")
    out = os.path.join(work, "convert-out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    py = sys.executable
    dst = os.path.join(out, "bundle")

    def fresh():  # no output left, and no earlier run's writeback still going on
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()

    model_bytes = 381_478_912 * 4
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None  # e.g. int8
    for dtype, torch_dtype in [("f32", "float32"), ("bf16", "bfloat16"), ("int8", "int8")]:
        if only and dtype not in only:
            continue
        cmd = [ARAPACK, "convert", path, dst, "--dtype", dtype, "--quiet"]
        print(row(f"arapack convert --dtype {dtype}", measure(cmd, runs=5, prepare=fresh), model_bytes))
        print(row(f"arapack convert --dtype {dtype} --no-source-digest", measure(cmd + ["--no-source-digest"], runs=5, prepare=fresh), model_bytes))
        print(row(f"torch.load(mmap) + save_file + sha256 ({torch_dtype})",
                  measure([py, "-c", TORCH_CONVERT, path, dst, torch_dtype], runs=5, prepare=fresh), model_bytes))
        print(row(f"  same + os.fsync of each file ({torch_dtype})",
                  measure([py, "-c", TORCH_CONVERT + FSYNC, path, dst, torch_dtype], runs=5, prepare=fresh)))
    fresh()


if __name__ == "__main__":
    main()
