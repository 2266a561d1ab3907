#!/usr/bin/env python3
"""Two arapack builds side by side on the full-size convert (issue 28, item 7: a refactor stays within noise): the
same jobs as bench_convert.py, the two binaries alternating run by run so that this VM's drift hits both alike;
reported per job as each side's median and min and the ratio of medians (new / old).

    git worktree add /tmp/old REV && (cd /tmp/old && swift build -c release --product arapack)
    swift build -c release --product arapack
    python Benchmarks/bench_versions.py /tmp/old/.build/release/arapack .build/release/arapack [/tmp/arapack-bench] [rounds]
"""
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import input_file, run_once  # noqa: E402


def main():
    old, new = sys.argv[1], sys.argv[2]
    work = sys.argv[3] if len(sys.argv) > 3 else "/tmp/arapack-bench"
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    path = input_file(work, "full_training.pt", "make_full_size_checkpoint.py")
    dst = os.path.join(work, "versions-out")
    jobs = [["--dtype", "f32", "--no-source-digest"], ["--dtype", "bf16", "--no-source-digest"],
            ["--dtype", "int8", "--no-source-digest"], ["--dtype", "bf16"]]
    for job in jobs:
        times = {old: [], new: []}
        peaks = {old: 0.0, new: 0.0}
        for r in range(rounds + 1):  # the first round warms the page cache and is not counted
            for binary in ([old, new] if r % 2 == 0 else [new, old]):
                shutil.rmtree(dst, ignore_errors=True)
                os.sync()
                run = run_once([binary, "convert", path, dst, "--quiet"] + job)
                if r > 0:
                    times[binary].append(run["wall"])
                    peaks[binary] = max(peaks[binary], run["peak"])
        o, n = statistics.median(times[old]), statistics.median(times[new])
        print(f"{' '.join(job):<32} old {o:6.3f} s (min {min(times[old]):.3f}, {peaks[old]:5.0f} MiB)   "
              f"new {n:6.3f} s (min {min(times[new]):.3f}, {peaks[new]:5.0f} MiB)   new/old {n / o:.3f}")
    shutil.rmtree(dst, ignore_errors=True)


if __name__ == "__main__":
    main()
