"""What the transformers interop scripts (interop_gpt2.py, interop_transformers.py) share: the dtype names,
a greedy loop over a reference model, the printed check list, and running a model card's quick-start code."""
import os
import re
import subprocess
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def greedy(model, ids, steps, eos):
    """Appends the argmax token `steps` times, stopping after `eos` as generate does."""
    out = ids
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(out)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if nxt.item() == eos:
                break
    return out


class Checks:
    """Each check printed as `ok    what` or `FAIL  what`; `finish` prints the verdict and exits 1 on a failure."""

    def __init__(self):
        self.problems = []

    def __call__(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.problems.append(what)

    def finish(self):
        print("ok" if not self.problems else f"{len(self.problems)} problem(s)")
        sys.exit(1 if self.problems else 0)


def card_quick_start(bundle, check):
    """Runs the first ```python block of the bundle's README.md as written, from the folder holding the bundle."""
    card = open(os.path.join(bundle, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    check(len(blocks) >= 1, "model card has quick-start code")
    if blocks:
        run = subprocess.run([sys.executable, "-c", blocks[0]], cwd=os.path.dirname(os.path.abspath(bundle)),
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        check(run.returncode == 0 and run.stdout.strip() != "",
              f"quick-start code runs as written (exit {run.returncode}): {run.stdout.strip()[-200:]} {run.stderr[-600:] if run.returncode else ''}")
    return card
