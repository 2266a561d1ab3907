"""Runs whole commands repeatedly and reports wall time and peak resident memory of each run
(taken from wait4's rusage). Linux carries this script's own high-water mark (about 10 MiB; torch is
only imported in the measured children) into each child, so that is the floor of every figure."""
import os
import statistics
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))


# The start of the PyTorch side's script for a conversion (inside a `python -c` string that has imported torch and
# read src from argv): the training checkpoint loaded mapped, its module prefixes stripped into `sd`, and the tied
# head checked and dropped, as arapack does.
TORCH_STATE_DICT = """
ck = torch.load(src, mmap=True, weights_only=True)
sd = {}
for k, v in ck["model"].items():
    for p in ("module.", "_orig_mod."):
        while k.startswith(p):
            k = k[len(p):]
    sd[k] = v
head, emb = sd.pop("lm_head.weight"), sd["token_embedding.weight"]
assert head.data_ptr() == emb.data_ptr() or torch.equal(head, emb), "untied"
"""


def run_once(cmd):
    """Wall seconds, user CPU seconds and peak RSS (MiB) of one run of `cmd`; a failed run raises."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed: {p.stderr.read().decode()}")
    return {"wall": wall, "user": usage.ru_utime, "peak": usage.ru_maxrss / 1024}


def measure(cmd, runs=5, warmup=1, env=None, prepare=None):
    """Median and min wall seconds and max peak RSS (MiB) over `runs` runs of `cmd` (a list).
    `prepare()`, when given, runs untimed before each run (e.g. removing outputs and syncing)."""
    walls, peaks = [], []
    for i in range(warmup + runs):
        if prepare:
            prepare()
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd} exited {p.returncode}: {p.stderr.read().decode()}")
        if i >= warmup:
            walls.append(wall)
            peaks.append(usage.ru_maxrss / 1024)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "peak_mib": max(peaks), "runs": runs}


def row(label, m, size_bytes=None):
    rate = f"  {size_bytes / m['median_s'] / 1e9:6.2f} GB/s" if size_bytes else ""
    return f"{label:<58} {m['median_s']:8.3f} s (min {m['min_s']:.3f}){rate}  peak {m['peak_mib']:7.1f} MiB"


def input_file(work, name, generator):
    """`work/name`, made first by `Benchmarks/<generator> PATH` when missing; prints its size."""
    path = os.path.join(work, name)
    if not os.path.exists(path):
        subprocess.run([sys.executable, os.path.join(BENCHMARKS, generator), path], check=True)
    print(f"file: {path} ({os.path.getsize(path):,} bytes); cores: {os.cpu_count()}")
    return path
