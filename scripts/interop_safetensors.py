#!/usr/bin/env python3
"""Interop check: files that arapack wrote are read by the official `safetensors` package with
exactly the values torch recorded in Fixtures/safetensors/valid.json.

    python scripts/interop_safetensors.py WRITTEN_DIR Fixtures/safetensors/valid.json

WRITTEN_DIR holds, for each fixture NAME in valid.json, either NAME (a .safetensors file) or a
folder NAME/ with model.safetensors.index.json and its shards. Uses `safetensors.deserialize`
(the Rust reader, framework-free); when torch is installed, also `safetensors.torch.load_file`.
Prints one line per file and `N passed, M failed`; exits 1 on any mismatch.
"""
import json
import os
import sys

from safetensors import deserialize, safe_open

try:
    import torch
    from safetensors.torch import load_file
except ImportError:
    torch = None


def tensors_of(path):
    """name -> (dtype, shape, raw bytes) for a file or a sharded folder."""
    if os.path.isdir(path):
        with open(os.path.join(path, "model.safetensors.index.json")) as f:
            index = json.load(f)
        out = {}
        for shard in sorted(set(index["weight_map"].values())):
            out.update(tensors_of(os.path.join(path, shard)))
        assert sorted(out) == sorted(index["weight_map"]), "index and shards disagree"
        return out
    with open(path, "rb") as f:
        items = deserialize(f.read())
    with safe_open(path, framework="numpy") as f:
        assert f.metadata().get("format") == "pt", "format metadata missing"
    return {name: (v["dtype"], list(v["shape"]), bytes(v["data"])) for name, v in items}


def torch_bytes(path):
    int_view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    paths = [path]
    if os.path.isdir(path):
        with open(os.path.join(path, "model.safetensors.index.json")) as f:
            paths = [os.path.join(path, s) for s in sorted(set(json.load(f)["weight_map"].values()))]
    out = {}
    for p in paths:
        for name, t in load_file(p).items():
            t = t.contiguous().reshape(-1)
            out[name] = t.view(int_view[t.element_size()]).numpy().tobytes() if t.numel() else b""
    return out


def main():
    written, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)["files"]
    passed = failed = 0
    for name, spec in sorted(expected.items()):
        path = os.path.join(written, name)
        problems = []
        try:
            got = tensors_of(path)
            if sorted(got) != sorted(spec["tensors"]):
                problems.append(f"tensor names differ: {sorted(got)}")
            for tname, t in spec["tensors"].items():
                dtype, shape, data = got.get(tname, (None, None, None))
                if (dtype, shape, data) != (t["dtype"], t["shape"], bytes.fromhex(t["hex"])):
                    problems.append(f"{tname}: {dtype} {shape} differs from {t['dtype']} {t['shape']} or its bytes")
            if torch is not None:
                for tname, data in torch_bytes(path).items():
                    if data != bytes.fromhex(spec["tensors"][tname]["hex"]):
                        problems.append(f"{tname}: torch reads different values")
        except Exception as e:  # report, don't stop: every file gets its line
            problems.append(f"{type(e).__name__}: {e}")
        if problems:
            failed += 1
            print(f"FAIL {name}: " + "; ".join(problems))
        else:
            passed += 1
            print(f"ok   {name}" + (" (safetensors + torch)" if torch is not None else " (safetensors)"))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
