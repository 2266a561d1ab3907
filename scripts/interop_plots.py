#!/usr/bin/env python3
"""The training-curve plots a bundle carries (`--training-log`), read back with a real XML parser and checked against
the log they were drawn from.

    python scripts/interop_plots.py make LOG ROWS [csv|jsonl]   a seeded run log as WandB exports a run's history:
                                                                _step, train/loss every step, val/loss every 10th
                                                                (empty elsewhere), lr (NaN at step 3), tokens, _runtime
    python scripts/interop_plots.py check BUNDLE LOG            each SVG parses (xml.etree); every point of every curve,
                                                                mapped back through the root's data-* box and ranges,
                                                                is a logged (step, value) within a hundredth of a pixel;
                                                                all logged points are drawn (or, past 2,048, a sample
                                                                with the first and the last); the final annotations
                                                                state the last values; the axes are labelled with step
                                                                and tokens seen. Prints JSON; exits 1 on a failure.
"""
import bisect
import csv
import json
import math
import random
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"
FILES = {"training_loss.svg": ["train"], "validation_loss.svg": ["validation"],
         "training_validation_loss.svg": ["train", "validation"], "learning_rate.svg": ["learning_rate"]}
COLUMNS = {"train": "train/loss", "validation": "val/loss", "learning_rate": "lr"}


def make(path, rows, kind="csv"):
    rng = random.Random(7)
    records = []
    for step in range(rows):
        loss = 2.6 + 4.0 * math.exp(-step / max(rows / 6, 1)) + rng.uniform(-0.05, 0.05)
        record = {"_step": step, "train/loss": round(loss, 6),
                  "val/loss": round(loss + 0.3, 6) if step % 10 == 0 else None,
                  "lr": float("nan") if step == 3 else round(3e-3 * min(1, (step + 1) / 100), 9),
                  "tokens": step * 16384, "_runtime": round(step * 0.5, 3)}
        records.append(record)
    if kind == "jsonl":
        with open(path, "w") as f:
            for r in records:
                f.write(json.dumps({k: v for k, v in r.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}) + "\n")
    else:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(records[0]))
            for r in records:
                w.writerow(["" if v is None else ("NaN" if isinstance(v, float) and math.isnan(v) else v) for v in r.values()])
    print(json.dumps({"rows": rows, "kind": kind}))


def logged(path):
    """series name -> [(step, value)] and step -> tokens, from the log (CSV or JSON lines)."""
    series = {k: [] for k in COLUMNS}
    tokens = {}
    with open(path) as f:
        first = f.read(1)
        f.seek(0)
        rows = (json.loads(line) for line in f if line.strip()) if first == "{" else csv.DictReader(f)
        for row in rows:
            step = float(row["_step"])
            for name, column in COLUMNS.items():
                v = row.get(column)
                if v not in (None, "") and math.isfinite(float(v)):
                    series[name].append((step, float(v)))
            if row.get("tokens") not in (None, ""):
                tokens[step] = float(row["tokens"])
    return series, tokens


def check(bundle, log):
    series, tokens = logged(log)
    failures, report = [], {}
    for name, ids in FILES.items():
        root = ET.parse(f"{bundle}/{name}").getroot()
        box = {k: float(root.get("data-" + k)) for k in ("x-min", "x-max", "y-min", "y-max", "left", "right", "top", "bottom")}
        sx = (box["right"] - box["left"]) / (box["x-max"] - box["x-min"])
        sy = (box["bottom"] - box["top"]) / (box["y-max"] - box["y-min"])
        for sid in ids:
            line = root.find(f"{SVG}polyline[@data-series='{sid}']")
            points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
            want = series[sid]
            steps = [s for s, _ in want]
            drawn = []
            for px, py in points:
                # Coordinates have two decimals: every logged step within 0.006 px of the point is a candidate.
                step = box["x-min"] + (px - box["left"]) / sx
                value = box["y-min"] + (box["bottom"] - py) / sy
                lo, hi = bisect.bisect_left(steps, step - 0.006 / sx), bisect.bisect_right(steps, step + 0.006 / sx)
                match = [i for i in range(lo, hi) if abs(want[i][1] - value) * sy <= 0.006 and (not drawn or steps[i] > drawn[-1])]
                if not match:
                    near = min(range(max(lo - 1, 0), min(hi + 1, len(steps))), key=lambda i: abs(steps[i] - step))
                    failures.append(f"{name} {sid}: point ({px}, {py}) is no logged value (nearest step {steps[near]}: {want[near][1]})")
                    break
                drawn.append(steps[match[0]])
            if len(want) <= 2048 and drawn != [s for s, _ in want]:
                failures.append(f"{name} {sid}: {len(drawn)} points drawn, {len(want)} logged")
            if len(want) > 2048 and (len(drawn) > 2049 or drawn[0] != want[0][0] or abs(drawn[-1] - want[-1][0]) * sx > 0.006
                                     or drawn != sorted(set(drawn))):
                failures.append(f"{name} {sid}: a sample of {len(drawn)} points must keep the first and the last, in order")
            report[f"{name}:{sid}"] = len(drawn)
            if name != "learning_rate.svg":
                final = root.find(f"{SVG}text[@class='final'][@data-series='{sid}']").text
                last_step, last_value = want[-1]
                if f"at step {int(last_step):,}" not in final or abs(float(final.split(" at ")[0].split()[-1]) - last_value) > 1e-5 * max(1, abs(last_value)):
                    failures.append(f"{name} {sid}: final annotation {final!r}, last logged {last_value} at {last_step}")
        texts = [t.text for t in root.iter(f"{SVG}text")]
        if "step" not in texts or ("tokens seen" if tokens else "tokens seen: not in the log") not in texts:
            failures.append(f"{name}: axis labels {texts[:3]}")
        tick_steps = [float(t.get("x")) for t in root.iter(f"{SVG}text") if t.get("class") == "tokens-tick"]
        if tokens and not tick_steps:
            failures.append(f"{name}: no tokens-seen ticks")
    print(json.dumps({"points": report, "failures": failures}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "csv")
    else:
        check(sys.argv[2], sys.argv[3])
