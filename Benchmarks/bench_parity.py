#!/usr/bin/env python3
"""Issue 14, item 7: `arapack verify BF16_BUNDLE --parity --against full_training.pt` (381M; 8 x 64 random
probes, the defaults) beside a PyTorch + safetensors script doing the same check: the reference model from
the training checkpoint (torch.load, mmap), its logits on the probes, then the bundle's bf16 weights
(safetensors) widened to float32 in the same module, its logits, and the same metrics (max |dlogit|, mean
KL, top-1 agreement). Each side is a whole process: wall time and peak resident memory from wait4, rounds
alternating the two sides (this VM drifts +-20% over minutes), each round's ratio from runs made seconds apart.

    swift build -c release --product arapack
    ROUNDS=3 python Benchmarks/bench_parity.py [/tmp/arapack-bench]     # needs torch, safetensors; ARAPACK_BIN names another build

The bf16 bundle is made first (`arapack convert full_training.pt WORK/parity-bf16 --dtype bf16`) when missing.
`python Benchmarks/bench_parity.py --torch-side BUNDLE CHECKPOINT` runs the PyTorch side alone (one model at a
time, the checkpoint mapped); `--torch-both` is the script as usually written (torch.load's defaults, a model per side).
"""
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.environ.get("ARAPACK_BIN", os.path.join(ROOT, ".build/release/arapack"))
PROBES, LENGTH, SEED = 8, 64, 0


def torch_side(bundle, checkpoint, both=False):
    """The check in PyTorch. Lean: the checkpoint mapped, one model at a time (as arapack does), so memory
    compares like with like. With `both`, as such a script is usually written: torch.load's defaults (the
    checkpoint read whole) and a model per side, both kept: the script the issue measured (7.7 GB)."""
    import torch
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.join(ROOT, "Fixtures"))
    from arafusion import ARBaseline

    torch.set_num_threads(os.cpu_count())
    # The lean script maps the checkpoint; the usual one reads it whole (torch.load's default).
    ck = torch.load(checkpoint, mmap=not both, weights_only=True)
    config = ck["config"]
    ids = torch.randint(0, config["vocab_size"], (PROBES, LENGTH), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        model = ARBaseline(**config).eval()
        model.load_state_dict(ck["model"])
        if not both:
            del ck
        reference = model(ids)
        if both:
            model = ARBaseline(**config).eval()
        state = {k[len("model."):]: v.float() for k, v in load_file(os.path.join(bundle, "model.safetensors")).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        if not both:
            del state
        candidate = model(ids)
        ref_log, cand_log = torch.log_softmax(reference, -1), torch.log_softmax(candidate, -1)
        kl = (ref_log.exp() * (ref_log - cand_log)).sum(-1)
        top1 = (reference.argmax(-1) == candidate.argmax(-1)).double().mean().item()
        print(f"max |dlogit| {(reference - candidate).abs().max().item():.4g}, mean KL {kl.mean().item():.3g}, top-1 {top1:.4f}")


def main():
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import input_file, measure, row

    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/arapack-bench"
    checkpoint = input_file(work, "full_training.pt", "make_full_size_checkpoint.py")
    bundle = os.path.join(work, "parity-bf16")
    if not os.path.exists(bundle):
        subprocess.run([ARAPACK, "convert", checkpoint, bundle, "--dtype", "bf16", "--no-source-digest"], check=True, stdout=subprocess.DEVNULL)
    ours_cmd = [ARAPACK, "verify", bundle, "--parity", "--against", checkpoint, "--probes", str(PROBES), "--seq-len", str(LENGTH)]
    theirs_cmd = [sys.executable, os.path.abspath(__file__), "--torch-side", bundle, checkpoint]
    both_cmd = [sys.executable, os.path.abspath(__file__), "--torch-both", bundle, checkpoint]
    print(subprocess.run(ours_cmd, capture_output=True, text=True).stdout.strip().splitlines()[-3:])
    print(subprocess.run(theirs_cmd, capture_output=True, text=True, check=True).stdout.strip())
    ratios, ratios_both, memory = [], [], []
    for r in range(int(os.environ.get("ROUNDS", "3"))):
        ours = measure(ours_cmd, runs=1, warmup=0)
        theirs = measure(theirs_cmd, runs=1, warmup=0)
        two = measure(both_cmd, runs=1, warmup=0)
        ratios.append(ours["median_s"] / theirs["median_s"])
        ratios_both.append(ours["median_s"] / two["median_s"])
        memory.append((ours["peak_mib"], theirs["peak_mib"], two["peak_mib"]))
        print(f"round {r + 1}:")
        print(row("  arapack verify --parity", ours))
        print(row("  PyTorch + safetensors, lean", theirs))
        print(row("  PyTorch + safetensors, as usually written", two))
        print(f"  time ratio arapack/PyTorch {ratios[-1]:.3f} (lean), {ratios_both[-1]:.3f} (as usually written)")
    print(f"median time ratio {statistics.median(ratios):.3f} against the lean script (rounds: {', '.join(f'{x:.3f}' for x in ratios)}), "
          f"{statistics.median(ratios_both):.3f} against the script as usually written (rounds: {', '.join(f'{x:.3f}' for x in ratios_both)}); "
          f"peak MiB arapack {max(m[0] for m in memory):.0f}, PyTorch {max(m[1] for m in memory):.0f} / {max(m[2] for m in memory):.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] in ("--torch-side", "--torch-both"):
        torch_side(sys.argv[2], sys.argv[3], both=sys.argv[1] == "--torch-both")
    else:
        main()
