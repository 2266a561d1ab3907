#!/usr/bin/env python3
"""`arapack convert --to gguf` at full size (issue 26), beside arapack's native bf16 conversion and llama.cpp's own
converter (convert_hf_to_gguf.py on the `--to gpt2` export, its tokenizer check bypassed: it refuses any newly trained
BPE tokenizer), rounds alternating, wall time and peak resident memory of each run (wait4):

    python Benchmarks/bench_gguf.py FULL_CHECKPOINT.pt [ROUNDS]

FULL_CHECKPOINT.pt comes from Benchmarks/make_full_size_checkpoint.py; arapack is .build-rel/release/arapack (swift
build -c release --scratch-path .build-rel). llama.cpp's converter comes from the llama-cpp-python 0.3.36 sdist
(LLAMA_CPP_DIR, else downloaded from PyPI into /tmp); it runs on this Python, which needs torch, transformers,
numpy and gguf."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ARAPACK = os.path.join(ROOT, ".build-rel", "release", "arapack")
TOKENIZER = os.path.join(ROOT, "Fixtures", "gguf", "bytelevel")

BYPASS = """
import sys
sys.path.insert(0, sys.argv.pop(1))
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"   # a newly trained BPE: no chkhsh entry
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def llama_cpp_dir():
    if os.environ.get("LLAMA_CPP_DIR"):
        return os.environ["LLAMA_CPP_DIR"]
    folder = "/tmp/llama-cpp-python-0.3.36"
    if not os.path.isdir(folder):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", "/tmp",
                        "llama-cpp-python==0.3.36"], check=True)
        subprocess.run(["tar", "xzf", "/tmp/llama_cpp_python-0.3.36.tar.gz", "-C", "/tmp"], check=True)
        os.rename("/tmp/llama_cpp_python-0.3.36", folder)
    return os.path.join(folder, "vendor", "llama.cpp")


def run(argv):
    """(seconds, peak MiB) of one run; fails loudly."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    if status != 0:
        sys.exit(f"{argv[:3]} failed: {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def main():
    checkpoint, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    work = tempfile.mkdtemp(prefix="bench-gguf-", dir=os.path.dirname(os.path.abspath(checkpoint)))
    export = os.path.join(work, "gpt2-export")
    subprocess.run([ARAPACK, "convert", checkpoint, export, "--to", "gpt2", "--tokenizer", TOKENIZER, "--quiet"], check=True)
    bypass = os.path.join(work, "bypass.py")
    open(bypass, "w").write(BYPASS)
    llama = llama_cpp_dir()
    sides = {
        "arapack bundle bf16": lambda i: [ARAPACK, "convert", checkpoint, f"{work}/bundle-{i}", "--dtype", "bf16", "--tokenizer", TOKENIZER, "--quiet"],
        "arapack gguf q8_0": lambda i: [ARAPACK, "convert", checkpoint, f"{work}/x-{i}.gguf", "--to", "gguf", "--dtype", "q8_0", "--tokenizer", TOKENIZER, "--quiet"],
        "arapack gguf f16": lambda i: [ARAPACK, "convert", checkpoint, f"{work}/h-{i}.gguf", "--to", "gguf", "--dtype", "f16", "--tokenizer", TOKENIZER, "--quiet"],
        "llama.cpp convert_hf_to_gguf q8_0": lambda i: [sys.executable, bypass, llama, export, "--outfile", f"{work}/l-{i}.gguf", "--outtype", "q8_0"],
    }
    results = {k: [] for k in sides}
    for i in range(rounds):
        for name, argv in sides.items():
            results[name].append(run(argv(i)))
            print(f"round {i + 1} {name}: {results[name][-1][0]:.2f} s, {results[name][-1][1]:.0f} MiB", flush=True)
        subprocess.run(["rm", "-rf"] + [os.path.join(work, f) for f in os.listdir(work) if f[0] in "bxhl" and f != "bypass.py"])
    base = statistics.median(s for s, _ in results["arapack bundle bf16"])
    print("\n| | median time | ratio to native bf16 | peak memory |\n|---|---|---|---|")
    for name, rows in results.items():
        t = statistics.median(s for s, _ in rows)
        print(f"| {name} | {t:.2f} s | {t / base:.2f}× | {max(m for _, m in rows):.0f} MiB |")
    per_round = [q[0] / b[0] for q, b in zip(results["arapack gguf q8_0"], results["arapack bundle bf16"])]
    print("q8_0 / bf16 per round:", " ".join(f"{r:.2f}" for r in per_round))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
