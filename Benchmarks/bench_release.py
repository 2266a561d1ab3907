#!/usr/bin/env python3
"""`arapack release` at full size beside the same artifacts made by separate `arapack convert --parity` runs, rounds
alternating after a warm-up; wall time and peak resident memory (wait4) of each process (the separate runs' times
summed, their peak the largest). BASELINE_ARAPACK names another binary for the converts (the release measured
against convert as it was); SETS=one or SETS=four runs one set.

    python Benchmarks/bench_release.py FULL_CHECKPOINT.pt [ROUNDS]

Two sets, both with parity on the default 8 × 64 random probes:
- one: the bf16 bundle with its archive (release vs `convert --dtype bf16 --archive --parity`);
- four: {bf16 bundle + archive, int8 bundle, GPT-2 f16, GGUF q8_0} (release vs four converts).
FULL_CHECKPOINT.pt comes from Benchmarks/make_full_size_checkpoint.py; arapack is .build-rel/release/arapack (swift
build -c release --product arapack --scratch-path .build-rel); the GGUF file takes the byte-level BPE tokenizer
fixture (llama.cpp reproduces it)."""
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_once  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARAPACK = os.path.join(ROOT, ".build-rel", "release", "arapack")
# The separate converts' binary: BASELINE_ARAPACK (e.g. a build of the commit the issue measured), else the same one.
CONVERT = os.environ.get("BASELINE_ARAPACK", ARAPACK)
TOKENIZER = os.path.join(ROOT, "Fixtures", "gguf", "bytelevel")
SETS = {
    "one": [["--dtype", "bf16", "--archive"]],
    "four": [["--dtype", "bf16", "--archive"], ["--dtype", "int8"], ["--to", "gpt2", "--dtype", "f16"], ["--to", "gguf", "--dtype", "q8_0"]],
}


def artifact(flags):
    """convert's flags as a release's --artifact spec."""
    pairs, i = [], 0
    while i < len(flags):
        key = flags[i][2:].replace("-", "_")
        if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            pairs.append(f"{key}={flags[i + 1]}")
            i += 2
        else:
            pairs.append(key)
            i += 1
    return ",".join(pairs)


def release(checkpoint, work, flags):
    dst = os.path.join(work, "release")
    argv = [ARAPACK, "release", checkpoint, dst, "--parity", "--tokenizer", TOKENIZER, "--quiet"]
    for f in flags:
        argv += ["--artifact", artifact(f)]
    r = run_once(argv)
    return r["wall"], r["peak"]


def separate(checkpoint, work, flags):
    wall, peak = 0.0, 0.0
    for i, f in enumerate(flags):
        dst = os.path.join(work, f"convert-{i}" + (".gguf" if "gguf" in f else ""))
        r = run_once([CONVERT, "convert", checkpoint, dst, "--parity", "--tokenizer", TOKENIZER, "--quiet"] + f)
        wall += r["wall"]
        peak = max(peak, r["peak"])
    return wall, peak


def main():
    checkpoint, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    only = os.environ.get("SETS")
    for name, flags in SETS.items():
        if only and name not in only.split(","):
            continue
        times, peaks = {"release": [], "convert": []}, {"release": 0.0, "convert": 0.0}
        for i in range(rounds + 1):  # the first round warms the page cache and is not counted
            for side in (["release", "convert"] if i % 2 == 0 else ["convert", "release"]):
                work = tempfile.mkdtemp(prefix="bench-release-", dir=os.path.dirname(os.path.abspath(checkpoint)))
                os.sync()
                t, m = (release if side == "release" else separate)(checkpoint, work, flags)
                shutil.rmtree(work)
                if i > 0:
                    times[side].append(t)
                    peaks[side] = max(peaks[side], m)
                print(f"{name} round {i} {side}: {t:.2f} s {m:.0f} MiB", flush=True)
        print(f"\n{name}: | | median | min | peak memory |\n|---|---|---|---|")
        for side, ts in times.items():
            print(f"| {side} | {statistics.median(ts):.2f} s | {min(ts):.2f} s | {peaks[side]:.0f} MiB |")
        ratios = [a / b for a, b in zip(times["release"], times["convert"])]
        print(f"release / separate converts per round: {', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}\n", flush=True)


if __name__ == "__main__":
    main()
