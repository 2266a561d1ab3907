#!/usr/bin/env python3
"""Issue 25: generation at full size (381M) through transformers, greedy, 128 new tokens after a 16-token
prompt, batch 1 and 4: the native bundle (arapack's wrapper, trust_remote_code, key/value cache), the same weights
exported `--to gpt2` and run by stock `GPT2LMHeadModel`, and the native wrapper without its cache
(`use_cache=False`: each step runs the whole sequence; 16 new tokens only, it is that slow). Rounds alternate the
sides (this VM drifts ±20% over minutes); each round's ratio compares runs made seconds apart. Then the native
bundle's cost per token: 400 new tokens against 100 (flat means ≤ 5×). Every run generates exactly its count
(min_new_tokens), float32, all cores.

    swift build -c release --product arapack
    ROUNDS=3 python Benchmarks/bench_generate.py [/tmp/arapack-bench]     # needs torch, transformers
The bundles (WORK/generate-native, WORK/generate-gpt2) are made from WORK/full_training.pt first when missing.
"""
import os
import statistics
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.environ.get("ARAPACK_BIN", os.path.join(ROOT, ".build/release/arapack"))
PROMPT, NEW, UNCACHED_NEW = 16, 128, 16


def tokens_per_second(model, batch, new, use_cache=True):
    ids = torch.randint(10, 1000, (batch, PROMPT), generator=torch.Generator().manual_seed(batch))
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new, min_new_tokens=new,
                             use_cache=use_cache, pad_token_id=5)
    elapsed = time.perf_counter() - t0
    assert out.shape == (batch, PROMPT + new), out.shape
    return batch * new / elapsed, elapsed


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench"
    checkpoint = input_file(work, "full_training.pt", "make_full_size_checkpoint.py")
    bundles = {"native": os.path.join(work, "generate-native"), "gpt2": os.path.join(work, "generate-gpt2")}
    for kind, path in bundles.items():
        if not os.path.exists(path):
            subprocess.run([ARAPACK, "convert", checkpoint, path, "--no-source-digest", "--quiet"] + (["--to", "gpt2"] if kind == "gpt2" else []),
                           check=True, stdout=subprocess.DEVNULL)
    torch.set_num_threads(os.cpu_count())
    native = AutoModelForCausalLM.from_pretrained(bundles["native"], trust_remote_code=True, torch_dtype=torch.float32).eval()
    gpt2 = AutoModelForCausalLM.from_pretrained(bundles["gpt2"], torch_dtype=torch.float32).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {type(native).__name__} and {type(gpt2).__name__}")
    for model in (native, gpt2):
        tokens_per_second(model, 1, 4)  # warm-up
    rounds = int(os.environ.get("ROUNDS", "3"))
    for batch in (1, 4):
        ratios, rows = [], []
        for r in range(rounds):
            ours, _ = tokens_per_second(native, batch, NEW)
            theirs, _ = tokens_per_second(gpt2, batch, NEW)
            slow, _ = tokens_per_second(native, batch, UNCACHED_NEW, use_cache=False)
            ratios.append(ours / theirs)
            rows.append((ours, theirs, slow))
            print(f"  batch {batch} round {r + 1}: native {ours:.2f} tokens/s, GPT-2 export {theirs:.2f}, "
                  f"native uncached ({UNCACHED_NEW} new) {slow:.2f}; native/GPT-2 {ratios[-1]:.3f}")
        print(f"batch {batch}: native {statistics.median(r[0] for r in rows):.2f} tokens/s, GPT-2 export "
              f"{statistics.median(r[1] for r in rows):.2f}, uncached {statistics.median(r[2] for r in rows):.2f}; "
              f"native/GPT-2 per round {', '.join(f'{x:.3f}' for x in sorted(ratios))}, median {statistics.median(ratios):.3f}")
    flat = []
    for r in range(rounds):
        _, short = tokens_per_second(native, 1, 100)
        _, long = tokens_per_second(native, 1, 400)
        flat.append(long / short)
        print(f"  flatness round {r + 1}: 100 new tokens {short:.2f} s, 400 new tokens {long:.2f} s, ratio {flat[-1]:.2f}")
    print(f"400 new tokens / 100 new tokens, native, cached: median {statistics.median(flat):.2f} (≤ 5 is flat; 4 is ideal)")


if __name__ == "__main__":
    main()
