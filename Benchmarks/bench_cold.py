#!/usr/bin/env python3
"""A checkpoint not in memory: the first command after it was written, copied or downloaded, or after the machine
reclaimed its page cache. Before every run the full-size checkpoint is dropped from the page cache
(`posix_fadvise(DONTNEED)`, which needs no privileges), then one whole process is timed, with the bytes the disk read
(/proc/diskstats). The commands, each with ARAPACK (the build under test) and, when BASELINE_ARAPACK is set, the same
command of another build, alternating in every round:

- `arapack inspect CKPT` (the ZIP directory, the pickle, the summary);
- `arapack run CKPT --ids …` (1 × 128 tokens, as bench_run.py);
- `arapack convert CKPT OUT --dtype bf16` (read, hash, cast, write);
- beside them, PyTorch from the same cold file: `torch.load(mmap=True, weights_only=True)`, `load_state_dict` and
  the forward on the same ids, timed inside a child process from before `torch.load` to after the forward (importing
  torch and building the module are not counted).

    swift build -c release --scratch-path .build-rel --product arapack
    ROUNDS=3 BASELINE_ARAPACK=/tmp/arapack-before python Benchmarks/bench_cold.py [/tmp/arapack-bench] [ARAPACK]
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, run_once  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCH_SIDE = r"""
import os, sys, time
sys.path.insert(0, sys.argv[2])
import torch
from arafusion import ARBaseline
ids = torch.randint(0, 76800, (1, 128), generator=torch.Generator().manual_seed(0))
start = time.perf_counter()
ck = torch.load(sys.argv[1], mmap=True, weights_only=True)
loaded = time.perf_counter()
model = ARBaseline(**ck["config"]).eval()
built = time.perf_counter()
model.load_state_dict(ck["model"])
with torch.no_grad():
    model(ids)
print((loaded - start) + (time.perf_counter() - built))
"""


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def device_of(path):
    """The block device holding `path` (its name in /proc/diskstats), for the bytes read."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if int(fields[0]) == major and int(fields[1]) == minor:
                # A partition's reads count on it; a whole disk's on itself.
                return fields[2]
    return None


def sectors_read(device):
    if device is None:
        return 0
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[2] == device:
                return int(fields[5])
    return 0


def main():
    path = input_file(sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench", "full_training.pt", "make_full_size_checkpoint.py")
    arapack = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, ".build-rel", "release", "arapack")
    baseline = os.environ.get("BASELINE_ARAPACK")
    rounds = int(os.environ.get("ROUNDS", "3"))
    device = device_of(path)
    out = tempfile.mkdtemp(prefix="arapack-cold-")
    ids = subprocess.run([sys.executable, "-c", "import random; r = random.Random(0); print(','.join(str(r.randrange(76800)) for _ in range(128)))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    builds = [("after", arapack)] + ([("before", baseline)] if baseline else [])
    commands = {
        "inspect": lambda b: [b, "inspect", path],
        "run 1x128": lambda b: [b, "run", path, "--ids", ids],
        "convert --dtype bf16": lambda b: [b, "convert", path, os.path.join(out, "bundle"), "--dtype", "bf16"],
    }
    times = {(c, name): [] for c in commands for name, _ in builds}
    reads = {(c, name): [] for c in commands for name, _ in builds}
    torch_times, torch_reads = [], []
    print(f"cold runs of {path} on {device}; {rounds} rounds; builds: {', '.join(f'{n} = {b}' for n, b in builds)}", flush=True)
    for r in range(rounds):
        order = builds if r % 2 == 0 else builds[::-1]
        for c, command in commands.items():
            for name, binary in order:
                shutil.rmtree(os.path.join(out, "bundle"), ignore_errors=True)
                evict(path)
                before = sectors_read(device)
                times[(c, name)].append(run_once(command(binary))["wall"])
                reads[(c, name)].append((sectors_read(device) - before) * 512 / 1e6)
                print(f"round {r + 1}: {c:<22} {name:<7} {times[(c, name)][-1]:6.2f} s, {reads[(c, name)][-1]:7.0f} MB read", flush=True)
        evict(path)
        before = sectors_read(device)
        seconds = float(subprocess.run([sys.executable, "-c", TORCH_SIDE, path, os.path.join(ROOT, "Fixtures")],
                                       check=True, capture_output=True, text=True).stdout.split()[-1])
        torch_times.append(seconds)
        torch_reads.append((sectors_read(device) - before) * 512 / 1e6)
        print(f"round {r + 1}: PyTorch load + forward        {seconds:6.2f} s, {torch_reads[-1]:7.0f} MB read", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    print("medians:")
    for c in commands:
        for name, _ in builds:
            print(f"  {c:<22} {name:<7} {statistics.median(times[(c, name)]):6.2f} s, {statistics.median(reads[(c, name)]):7.0f} MB read")
    print(f"  PyTorch torch.load(mmap) + load_state_dict + forward: {statistics.median(torch_times):6.2f} s, "
          f"{statistics.median(torch_reads):7.0f} MB read")


if __name__ == "__main__":
    main()
