#!/usr/bin/env python3
"""Issue 17 benchmark: `convert --to gpt2` beside the native `convert` of the same full-size (381M) training
checkpoint (~4.6 GB with AdamW state), float32 and bf16, `--no-source-digest` (the source hash runs on the
other core and would hide the conversion's own cost). The GPT-2 form transposes every linear weight
(~79% of the parameters) on the way. The two sides alternate in rounds, the order swapped each round (the
machine's speed drifts between minutes); each round's time ratio is reported, and the median ratio.

    swift build -c release --product arapack
    python Benchmarks/bench_gpt2.py [/tmp/arapack-bench]        # ROUNDS=7 to change the number of rounds
"""
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, measure  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.path.join(ROOT, ".build/release/arapack")


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench"
    rounds = int(os.environ.get("ROUNDS", "5"))
    path = input_file(work, "full_training.pt", "make_full_size_checkpoint.py")
    out = os.path.join(work, "gpt2-out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    dst = os.path.join(out, "bundle")

    def fresh():  # no output left, and no earlier run's writeback still going on
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()

    for dtype in ("f32", "bf16"):
        sides = {"native": [ARAPACK, "convert", path, dst, "--dtype", dtype, "--no-source-digest", "--quiet"],
                 "gpt2": [ARAPACK, "convert", path, dst, "--to", "gpt2", "--dtype", dtype, "--no-source-digest", "--quiet"]}
        results = {"native": [], "gpt2": []}
        measure(sides["native"], runs=1, warmup=0, prepare=fresh)  # page cache warm-up, untimed
        for r in range(rounds):
            order = ["native", "gpt2"] if r % 2 == 0 else ["gpt2", "native"]
            for side in order:
                results[side].append(measure(sides[side], runs=1, warmup=0, prepare=fresh))
            ratio = results["gpt2"][-1]["median_s"] / results["native"][-1]["median_s"]
            print(f"{dtype} round {r + 1}: native {results['native'][-1]['median_s']:.3f} s, "
                  f"gpt2 {results['gpt2'][-1]['median_s']:.3f} s, gpt2/native {ratio:.3f}", flush=True)
        ratios = [g["median_s"] / n["median_s"] for g, n in zip(results["gpt2"], results["native"])]
        for side in ("native", "gpt2"):
            walls = [m["median_s"] for m in results[side]]
            print(f"{dtype} {side:<6} median {statistics.median(walls):.3f} s (min {min(walls):.3f}), "
                  f"peak {max(m['peak_mib'] for m in results[side]):.1f} MiB")
        print(f"{dtype} gpt2/native: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}) "
              f"over {rounds} rounds", flush=True)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
