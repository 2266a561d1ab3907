#!/usr/bin/env python3
"""`arapack eval BF16_BUNDLE --tokens SHARD --against full_training.pt` at full size (381M; 8 sequences of 512 ids)
beside a PyTorch script computing the same statistics on the same cores: the reference from the training checkpoint
(torch.load, mmap) and the bundle's bf16 weights widened to float32 in a second module, each sequence's logits
through both, then per next-token position −ln p of the next id on both sides, KL(reference ‖ bundle), Δp and the
argmaxes in float64, and the means. Each side is a whole process: wall time and peak resident memory from wait4,
rounds alternating the two sides (this VM drifts ±20% over minutes).

    swift build -c release --product arapack
    python Benchmarks/make_full_size_checkpoint.py /tmp/arapack-bench/full_training.pt
    ROUNDS=3 python Benchmarks/bench_eval.py [/tmp/arapack-bench]     # needs torch, safetensors, numpy
    ARAPACK_THREADS=1 ROUNDS=3 python Benchmarks/bench_eval.py --arapack-only [/tmp/arapack-bench]   # thread scaling

The bf16 bundle (`WORK/eval-bf16`) and the shard (`WORK/eval-tokens.npy`, 8 × 512 uint32 ids drawn with seed 0)
are made first when missing.
"""
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import run_once  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.environ.get("ARAPACK_BIN", os.path.join(ROOT, ".build/release/arapack"))
SEQUENCES, LENGTH = 8, 512


def torch_side(bundle, checkpoint, shard):
    import numpy as np
    import torch
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
    from arafusion import ARBaseline

    torch.set_num_threads(os.cpu_count())
    ck = torch.load(checkpoint, mmap=True, weights_only=True)
    config = {**ck["config"], "dropout": 0.0}
    reference = ARBaseline(**config).eval()
    reference.load_state_dict(ck["model"])
    tensors = load_file(os.path.join(bundle, "model.safetensors"))
    state = {k[len("model."):]: v.float() for k, v in tensors.items()}
    state["lm_head.weight"] = state["token_embedding.weight"]
    model = ARBaseline(**config).eval()
    model.load_state_dict(state)
    ids = torch.from_numpy(np.load(shard).astype(np.int64))
    nll, nll_ref, kld, dp, same, n = 0.0, 0.0, 0.0, 0.0, 0, 0
    with torch.no_grad():
        for row in ids:
            x = row[None]
            lp = torch.log_softmax(reference(x)[0, :-1].double(), -1)
            lq = torch.log_softmax(model(x)[0, :-1].double(), -1)
            nxt = row[1:]
            a, b = lq[torch.arange(len(nxt)), nxt], lp[torch.arange(len(nxt)), nxt]
            nll -= a.sum().item()
            nll_ref -= b.sum().item()
            kld += (lp.exp() * (lp - lq)).sum().item()
            dp += (a.exp() - b.exp()).sum().item()
            same += int((lp.argmax(-1) == lq.argmax(-1)).sum())
            n += len(nxt)
    print(f"ppl {np.exp(nll / n):.4f} / {np.exp(nll_ref / n):.4f}, mean KL {kld / n:.3e}, mean dp {dp / n:.3e}, same top {same / n:.4f}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--torch-side" in sys.argv:
        torch_side(*args[:3])
        return
    work = args[0] if args else "/tmp/arapack-bench"
    checkpoint = os.path.join(work, "full_training.pt")
    bundle, shard = os.path.join(work, "eval-bf16"), os.path.join(work, "eval-tokens.npy")
    if not os.path.exists(bundle):
        subprocess.run([ARAPACK, "convert", checkpoint, bundle, "--dtype", "bf16", "--quiet"], check=True)
    if not os.path.exists(shard):
        import numpy as np
        rng = np.random.default_rng(0)
        np.save(shard, rng.integers(0, 76_800, (SEQUENCES, LENGTH)).astype(np.uint32))
    ours = [ARAPACK, "eval", bundle, "--tokens", shard, "--against", checkpoint, "--quiet"]
    theirs = [sys.executable, os.path.abspath(__file__), "--torch-side", bundle, checkpoint, shard]
    rounds = int(os.environ.get("ROUNDS", "3"))
    sides = [("arapack", ours)] + ([] if "--arapack-only" in sys.argv else [("pytorch", theirs)])
    results = {name: [] for name, _ in sides}
    for r in range(rounds):
        for name, cmd in (sides if r % 2 == 0 else list(reversed(sides))):
            results[name].append(run_once(cmd))
    for name, runs in results.items():
        walls, peaks = [x["wall"] for x in runs], [x["peak"] for x in runs]
        print(f"{name:8} median {statistics.median(walls):.2f} s (runs {', '.join(f'{w:.2f}' for w in walls)}), peak {max(peaks):.0f} MiB")
    if len(results) == 2:
        ratios = [a["wall"] / b["wall"] for a, b in zip(results["arapack"], results["pytorch"])]
        print(f"arapack / pytorch per round: {', '.join(f'{x:.2f}' for x in ratios)}; median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
