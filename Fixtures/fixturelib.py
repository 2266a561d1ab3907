"""Helpers the fixture generators share: how a tensor is recorded in their expectation files."""
import json
import os
import shutil

import torch

# safetensors dtype names of torch dtypes.
ST_NAME = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.float8_e5m2: "F8_E5M2",
    torch.float8_e4m3fn: "F8_E4M3", torch.int16: "I16", torch.uint16: "U16", torch.float16: "F16",
    torch.bfloat16: "BF16", torch.int32: "I32", torch.uint32: "U32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64", torch.uint64: "U64",
}
# An integer dtype of each element size, to read any tensor's raw bytes.
INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def raw_bytes(t):
    """The tensor's elements as little-endian bytes in row-major order (as any file format stores them)."""
    c = t.detach().contiguous().reshape(-1)
    return c.view(INT_VIEW[c.element_size()]).numpy().tobytes() if c.numel() else b""


def describe(t, float_bits=False):
    """dtype, shape and hex bytes; with float_bits, also torch's own float32 widening of each element."""
    entry = {"dtype": ST_NAME[t.dtype], "shape": list(t.shape), "hex": raw_bytes(t).hex()}
    if float_bits and t.is_floating_point():
        entry["float32_bits"] = [b & 0xFFFFFFFF for b in t.float().reshape(-1).view(torch.int32).tolist()]
    return entry


def fresh_dirs(*dirs):
    """Empties and recreates each folder."""
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
