#!/usr/bin/env python3
"""Issue 17 benchmark: `convert --to gpt2` beside the native `convert` of the same full-size (381M) training
checkpoint (~4.6 GB with AdamW state), float32 and bf16, `--no-source-digest` (the source hash runs on the
other core and would hide the conversion's own cost), or with DIGEST=1 as users run it by default (the
4.6 GB source hashed for the manifest on the second core). The GPT-2 form transposes every linear weight
(~79% of the parameters) on the way. The two sides alternate in rounds, the order swapped each round (the
machine's speed drifts between minutes); each round's wall-time ratio is reported, with the median ratio,
the ratio of the fastest runs and the ratio of user CPU time (the write path's kernel time on this VM swings
by 2x between identical runs, so wall ratios need many rounds; each run starts after SETTLE seconds of quiet).

    swift build -c release --product arapack
    python Benchmarks/bench_gpt2.py [/tmp/arapack-bench]        # ROUNDS=7 rounds; DIGEST=1 for the default job
"""
import os
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, run_once as run  # noqa: E402

SETTLE = float(os.environ.get("SETTLE", "4"))  # seconds of quiet before each timed run
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

    def fresh():  # no output left, no earlier run's writeback or file deletion still going on
        shutil.rmtree(dst, ignore_errors=True)
        os.sync()
        time.sleep(SETTLE)

    for dtype in ("f32", "bf16"):
        digest = [] if os.environ.get("DIGEST") == "1" else ["--no-source-digest"]
        sides = {"native": [ARAPACK, "convert", path, dst, "--dtype", dtype, "--quiet"] + digest,
                 "gpt2": [ARAPACK, "convert", path, dst, "--to", "gpt2", "--dtype", dtype, "--quiet"] + digest}
        results = {"native": [], "gpt2": []}
        fresh()
        run(sides["native"])  # page cache warm-up, untimed
        for r in range(rounds):
            order = ["native", "gpt2"] if r % 2 == 0 else ["gpt2", "native"]
            for side in order:
                fresh()
                results[side].append(run(sides[side]))
            n, g = results["native"][-1], results["gpt2"][-1]
            print(f"{dtype} round {r + 1}: native {n['wall']:.3f} s ({n['user']:.2f} s user), "
                  f"gpt2 {g['wall']:.3f} s ({g['user']:.2f} s user), gpt2/native {g['wall'] / n['wall']:.3f}", flush=True)
        for side in ("native", "gpt2"):
            walls = [m["wall"] for m in results[side]]
            print(f"{dtype} {side:<6} median {statistics.median(walls):.3f} s (min {min(walls):.3f}), user CPU median "
                  f"{statistics.median(m['user'] for m in results[side]):.3f} s, peak {max(m['peak'] for m in results[side]):.1f} MiB")
        ratios = [g["wall"] / n["wall"] for g, n in zip(results["gpt2"], results["native"])]
        user = [g["user"] / n["user"] for g, n in zip(results["gpt2"], results["native"])]
        print(f"{dtype} gpt2/native wall: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}); "
              f"user CPU: median {statistics.median(user):.3f}; min wall {min(m['wall'] for m in results['gpt2']) / min(m['wall'] for m in results['native']):.3f}; "
              f"{rounds} rounds", flush=True)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
