#!/usr/bin/env python3
"""Issue 7 measurement: what bf16, f16 and int8 cost on a model really trained on Arabic text
(Fixtures/trained/arafusion_tiny_ar.pt), measured on held-out text (Fixtures/trained/heldout.safetensors,
64 × 32 tokens never trained on) with arapack's own parity metrics: mean / max KL(f32 ‖ bundle), top-1
agreement, perplexity of each side. Also the float32 bundle against PyTorch's logits (golden). The parity
defaults in Sources/ArapackModel/ParityMetrics.swift are set from this table with margin.

    swift build -c release --product arapack
    python Benchmarks/measure_parity.py
"""
import json
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARAPACK = os.path.join(ROOT, ".build/release/arapack")
TRAINED = os.path.join(ROOT, "Fixtures/trained")
SOURCE = os.path.join(TRAINED, "arafusion_tiny_ar.pt")
PROBES = os.path.join(TRAINED, "heldout.safetensors")
GOLDEN = os.path.join(TRAINED, "heldout.golden.safetensors")


def run(*args):
    return subprocess.run([ARAPACK, *args], capture_output=True, text=True)


def main():
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for label, options in [("f32 (lossless)", []), ("bf16", ["--dtype", "bf16"]), ("f16", ["--dtype", "f16"]),
                               ("int8 per channel", ["--dtype", "int8"]), ("int8 groups of 32", ["--dtype", "int8", "--int8-group-size", "32"])]:
            bundle = os.path.join(work, label.split()[0] + str(len(rows)))
            r = run("convert", SOURCE, bundle, "--quiet", "--tokenizer", os.path.join(TRAINED, "tokenizer"), *options)
            assert r.returncode == 0, r.stderr
            report = os.path.join(work, "report.json")
            extra = ["--golden", GOLDEN] if not options else []
            # Limits are irrelevant here: only the metrics are read (exit 1 is fine).
            run("verify", bundle, "--parity", "--against", SOURCE, "--probe-ids", PROBES, "--report", report, *extra)
            doc = json.load(open(report))
            m = doc["parity"][0]["metrics"]
            size = sum(os.path.getsize(os.path.join(bundle, f)) for f in os.listdir(bundle) if f.endswith(".safetensors"))
            rows.append((label, m, size))
            if extra:
                g = doc["parity"][1]["metrics"]
                print(f"f32 bundle vs PyTorch logits on held-out text: max |Δ| {g['max_abs_diff']:.3g}, mean KL {g['mean_kl']:.3g}, "
                      f"perplexity {g['perplexity_reference']:.3f} (torch) / {g['perplexity_bundle']:.3f} (arapack)")
    print(f"{'bundle':<20} {'weights':>9} {'mean KL':>10} {'max KL':>10} {'top-1':>8} {'ppl f32':>9} {'ppl bundle':>10} {'Δppl %':>8}")
    for label, m, size in rows:
        ppl_a, ppl_b = m["perplexity_reference"], m["perplexity_bundle"]
        print(f"{label:<20} {size:>9,} {m['mean_kl']:>10.3g} {m['max_kl']:>10.3g} {m['top1_agreement']:>8.4f} "
              f"{ppl_a:>9.3f} {ppl_b:>10.3f} {100 * (ppl_b - ppl_a) / ppl_a:>8.3f}")


if __name__ == "__main__":
    main()
