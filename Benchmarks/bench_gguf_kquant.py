#!/usr/bin/env python3
"""`arapack convert --to gguf --dtype q4_k_m` in one step from the full-size training checkpoint, beside today's two-step
path (arapack's f16 GGUF, then llama.cpp's own llama_model_quantize to Q4_K_M on both cores), rounds alternating; wall
time and peak resident memory of each step (wait4). Once, the one-step file's tensors are compared with what
llama_model_quantize makes of arapack's f32 file (same types, same bytes).

    python Benchmarks/bench_gguf_kquant.py FULL_CHECKPOINT.pt [ROUNDS]

FULL_CHECKPOINT.pt comes from Benchmarks/make_full_size_checkpoint.py; arapack is .build-rel/release/arapack (swift
build -c release --product arapack --scratch-path .build-rel); this Python needs llama_cpp (llama-cpp-python 0.3.36,
as scripts/test.sh builds it), gguf and numpy."""
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_once  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARAPACK = os.path.join(ROOT, ".build-rel", "release", "arapack")
TOKENIZER = os.path.join(ROOT, "Fixtures", "gguf", "bytelevel")
QUANTIZE = """
import ctypes, sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
params.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(params)))
"""


def run(argv):
    """(seconds, peak MiB) of one run; fails loudly."""
    r = run_once(argv)
    return r["wall"], r["peak"]


def same_tensors(a, b):
    import numpy as np
    from gguf import GGUFReader
    ta = {t.name: t for t in GGUFReader(a).tensors}
    tb = {t.name: t for t in GGUFReader(b).tensors}
    assert sorted(ta) == sorted(tb), "tensor names differ"
    for name, t in ta.items():
        assert t.tensor_type == tb[name].tensor_type, f"{name}: types differ"
        assert np.asarray(t.data).tobytes() == np.asarray(tb[name].data).tobytes(), f"{name}: bytes differ"
    return len(ta)


def main():
    checkpoint, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="bench-kquant-", dir=os.path.dirname(os.path.abspath(checkpoint)))
    one, f16, two = (os.path.join(work, n) for n in ("one.gguf", "f16.gguf", "two.gguf"))
    times = {"one step": [], "two steps": [], "  of which f16": [], "  of which quantize": []}
    peaks = {k: 0.0 for k in times}
    for i in range(rounds + 1):  # the first round warms the page cache and is not counted
        order = ["one", "two"] if i % 2 == 0 else ["two", "one"]
        for side in order:
            for f in ((one,) if side == "one" else (f16, two)):
                if os.path.exists(f):
                    os.remove(f)
            os.sync()
            if side == "one":
                t, m = run([ARAPACK, "convert", checkpoint, one, "--to", "gguf", "--dtype", "q4_k_m", "--tokenizer", TOKENIZER, "--quiet"])
                rows = [("one step", t, m)]
            else:
                t1, m1 = run([ARAPACK, "convert", checkpoint, f16, "--to", "gguf", "--dtype", "f16", "--tokenizer", TOKENIZER, "--quiet"])
                t2, m2 = run([sys.executable, "-c", QUANTIZE, f16, two])
                rows = [("two steps", t1 + t2, max(m1, m2)), ("  of which f16", t1, m1), ("  of which quantize", t2, m2)]
            if i > 0:
                for name, t, m in rows:
                    times[name].append(t)
                    peaks[name] = max(peaks[name], m)
            print(f"round {i} {side}: " + ", ".join(f"{n.strip()} {t:.2f} s {m:.0f} MiB" for n, t, m in rows), flush=True)
    print("\n| | median | min | peak memory |\n|---|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} s | {min(ts):.2f} s | {peaks[name]:.0f} MiB |")
    ratios = [a / b for a, b in zip(times["one step"], times["two steps"])]
    print("one / two per round:", " ".join(f"{r:.2f}" for r in ratios), f"(median {statistics.median(ratios):.2f})")
    # The one-step file is what llama.cpp makes of the float32 file (the two-step path starts from float16, so its
    # bytes differ by that rounding). Checked after the timed rounds: this Python grows reading the files, and a child
    # forked from it would count that in its peak.
    for f in (one, f16, two):
        if os.path.exists(f):
            os.remove(f)
    run([ARAPACK, "convert", checkpoint, one, "--to", "gguf", "--dtype", "q4_k_m", "--tokenizer", TOKENIZER, "--quiet"])
    f32, ref = os.path.join(work, "f32.gguf"), os.path.join(work, "ref.gguf")
    run([ARAPACK, "convert", checkpoint, f32, "--to", "gguf", "--dtype", "f32", "--tokenizer", TOKENIZER, "--quiet"])
    run([sys.executable, "-c", QUANTIZE, f32, ref])
    print(f"same tensors as llama.cpp's from the f32 file: {same_tensors(one, ref)} (types and bytes)")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
