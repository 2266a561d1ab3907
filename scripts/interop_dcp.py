#!/usr/bin/env python3
"""Interop check: DCP folders arapack wrote load with torch.distributed.checkpoint.load into
{"model": state_dict} and hold exactly the source tensors; AraFusion ones also load into ARBaseline.

    python scripts/interop_dcp.py WRITTEN_DIR SOURCE_DIR

For each folder WRITTEN_DIR/NAME the source is SOURCE_DIR/NAME.pt (a torch.save checkpoint whose state
dict is bare or under model/model_state_dict/state_dict/module). Runs in one process without a process
group, as dcp.load allows. Prints one line per folder and `N passed, M failed`; exits 1 on any mismatch.
"""
import os
import sys
import warnings

import torch
import torch.distributed.checkpoint as dcp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402
from interop_torch import run_all, state_dict  # noqa: E402

warnings.filterwarnings("ignore")


def check(written, source_path):
    problems = []
    source_obj = torch.load(source_path, weights_only=True)
    source = state_dict(source_obj)
    target = {"model": {k: torch.full_like(v, 7) for k, v in source.items()}}
    dcp.load(target, checkpoint_id=written)
    for k, v in source.items():
        w = target["model"][k]
        if w.dtype != v.dtype or w.shape != v.shape or not torch.equal(w, v):
            problems.append(f"{k} differs")
    config = source_obj.get("config") if isinstance(source_obj, dict) else None
    if isinstance(config, dict) and set(source) == set(ARBaseline(**config).state_dict()):
        net = ARBaseline(**config)
        sd = {"model": net.state_dict()}
        dcp.load(sd, checkpoint_id=written)
        for k, v in source.items():
            if not torch.equal(sd["model"][k].to(v.dtype), v):
                problems.append(f"ARBaseline {k} differs")
    return problems


def main():
    written_dir, source_dir = sys.argv[1], sys.argv[2]
    names = [n for n in sorted(os.listdir(written_dir)) if os.path.isdir(os.path.join(written_dir, n))]
    run_all((n, lambda n=n: check(os.path.join(written_dir, n), os.path.join(source_dir, n + ".pt"))) for n in names)


if __name__ == "__main__":
    main()
