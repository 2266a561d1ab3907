#!/usr/bin/env python3
"""Interop check: checkpoints arapack wrote load with torch.load(weights_only=True), hold exactly the
source tensors, keep shared storages shared, and (for AraFusion state dicts) load into ARBaseline.

    python scripts/interop_torch.py WRITTEN_DIR SOURCE_DIR

For each WRITTEN_DIR/NAME.pt the source is SOURCE_DIR/NAME.pt (any torch.save checkpoint whose
state dict is bare or under model/model_state_dict/state_dict/module). Prints one line per file and
`N passed, M failed`; exits 1 on any mismatch.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

KEYS = ("model", "model_state_dict", "state_dict", "module")


def state_dict(obj):
    for k in KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(k), dict) and any(isinstance(v, torch.Tensor) for v in obj[k].values()):
            return obj[k]
    return obj


def check(written_path, source_path):
    problems = []
    written = torch.load(written_path, weights_only=True)
    source = state_dict(torch.load(source_path, weights_only=True))
    model = written.get("model")
    if not isinstance(model, dict):
        return ["no model state dict under 'model'"]
    if list(model) != list(source):
        problems.append("key order or names differ")
    for k, v in source.items():
        w = model.get(k)
        if w is None or w.dtype != v.dtype or w.shape != v.shape or not torch.equal(w, v.contiguous()):
            problems.append(f"{k} differs")
    ptr = lambda t: (t.untyped_storage().data_ptr(), t.storage_offset())  # noqa: E731
    for a in source:
        for b in source:
            if a < b and ptr(source[a]) == ptr(source[b]) and source[a].shape == source[b].shape and ptr(model[a]) != ptr(model[b]):
                problems.append(f"{a} and {b} share storage in the source but not in the written file")
    config = written.get("config")
    if isinstance(config, dict) and set(model) == set(ARBaseline(**config).state_dict()):
        net = ARBaseline(**config)
        net.load_state_dict(model, strict=True)
        if net.lm_head.weight.data_ptr() != net.token_embedding.weight.data_ptr():
            problems.append("ARBaseline lost its tie")
    return problems


def run_all(cases):
    """Runs each (name, check) pair, printing one line per case and `N passed, M failed`; exits 1 on any
    failure (or when there was nothing to check)."""
    passed = failed = 0
    for name, check_case in cases:
        try:
            problems = check_case()
        except Exception as e:  # every case gets its line
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            failed += 1
            print(f"FAIL {name}: " + "; ".join(problems))
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


def main():
    written_dir, source_dir = sys.argv[1], sys.argv[2]
    names = [n for n in sorted(os.listdir(written_dir)) if n.endswith(".pt")]
    run_all((n, lambda n=n: check(os.path.join(written_dir, n), os.path.join(source_dir, n))) for n in names)


if __name__ == "__main__":
    main()
