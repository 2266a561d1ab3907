#!/usr/bin/env python3
"""Generates the safetensors fixtures: valid files written by the real `safetensors` and
`huggingface_hub` packages (values recorded in valid.json from torch itself), and a hostile
corpus in which each rule of docs/formats.md is broken once (hostile.json maps each file to
the message fragment arapack must print). Run from anywhere:

    python Fixtures/safetensors/generate.py      # versions pinned in Fixtures/requirements.txt
"""
import json
import os
import struct
import sys

import torch
from huggingface_hub import save_torch_state_dict
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from fixturelib import describe as describe_tensor, fresh_dirs, raw_bytes, write_json  # noqa: E402

VALID = os.path.join(HERE, "valid")
HOSTILE = os.path.join(HERE, "hostile")

def all_dtype_tensors():
    f = float
    inf, nan = f("inf"), f("nan")
    return {
        "f32": torch.tensor([[0.0, -0.0, 1.5], [-2.25, inf, -inf], [nan, 1e-45, 3.4028234663852886e38]], dtype=torch.float32),
        "f64": torch.tensor([0.1, -1e300, 5e-324, inf, nan, 2.0**60], dtype=torch.float64),
        "f16": torch.tensor([0.0, 6e-8, 65504.0, -inf, nan, 1.0009765625, 0.333], dtype=torch.float16),
        "bf16": torch.tensor([[1.0, -3.140625], [1e38, 9.2e-41], [inf, nan]], dtype=torch.bfloat16),
        "f8_e4m3": torch.tensor([0.0, 0.5, -1.75, 448.0, 2.0**-9, nan], dtype=torch.float32).to(torch.float8_e4m3fn),
        "f8_e5m2": torch.tensor([0.0, 57344.0, -2.0**-16, 1.25, inf], dtype=torch.float32).to(torch.float8_e5m2),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "i32": torch.tensor([[-(2**31), 2**31 - 1], [7, -7]], dtype=torch.int32),
        "u32": torch.tensor([0, 2**32 - 1], dtype=torch.uint32),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 42], dtype=torch.int64),
        "u64": torch.tensor([0, 2**64 - 1], dtype=torch.uint64),
        "bool": torch.tensor([True, False, True], dtype=torch.bool),
        "empty_f32": torch.zeros((0, 4), dtype=torch.float32),
        "scalar_f64": torch.tensor(3.25, dtype=torch.float64),
        "scalar_i64": torch.tensor(-9, dtype=torch.int64),
        "model.layers.0.weight": torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7,
    }


def describe(t):
    return describe_tensor(t, float_bits=True)


def st_bytes(header, data=b"", length=None, pad=True):
    """A safetensors file from a header (dict, or raw bytes used verbatim) and a data buffer."""
    if isinstance(header, (dict, list)):
        header = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        header += b" " * ((8 - len(header) % 8) % 8)
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def write(path, content):
    with open(path, "wb") as f:
        f.write(content)


def make_valid(expected):
    tensors = all_dtype_tensors()
    save_file(tensors, os.path.join(VALID, "all_dtypes.safetensors"), metadata={"format": "pt"})
    expected["all_dtypes.safetensors"] = {"metadata": {"format": "pt"}, "tensors": {k: describe(v) for k, v in tensors.items()}}

    meta = {"format": "pt", "model": "arafusion", "note": "نموذج عربي \"quoted\"\n"}
    small = {"a": torch.ones(2, 2), "b": torch.full((3,), 2, dtype=torch.bfloat16)}
    save_file(small, os.path.join(VALID, "metadata.safetensors"), metadata=meta)
    expected["metadata.safetensors"] = {"metadata": meta, "tensors": {k: describe(v) for k, v in small.items()}}

    # No __metadata__ at all (allowed).
    save_file({"x": torch.tensor([1.0, 2.0])}, os.path.join(VALID, "no_metadata.safetensors"))
    expected["no_metadata.safetensors"] = {"metadata": None, "tensors": {"x": describe(torch.tensor([1.0, 2.0]))}}

    # Unaligned F32 data after 3 bytes of U8 (old writers did this): the reference reader loads it.
    u8 = torch.tensor([1, 2, 3], dtype=torch.uint8)
    f32 = torch.tensor([1.0, -2.5, 1e-3], dtype=torch.float32)
    header = {"u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
              "w": {"dtype": "F32", "shape": [3], "data_offsets": [3, 15]}}
    path = os.path.join(VALID, "unaligned.safetensors")
    write(path, st_bytes(header, raw_bytes(u8) + raw_bytes(f32)))
    back = load_file(path)
    assert torch.equal(back["w"], f32) and torch.equal(back["u"], u8)
    expected["unaligned.safetensors"] = {"metadata": None, "tensors": {"u": describe(u8), "w": describe(f32)}}

    # Whitespace around the JSON, unpadded header length.
    path = os.path.join(VALID, "whitespace.safetensors")
    write(path, st_bytes(b'{"x":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}   \n\t ', raw_bytes(torch.tensor([5], dtype=torch.int32)), pad=False))
    load_file(path)
    expected["whitespace.safetensors"] = {"metadata": None, "tensors": {"x": describe(torch.tensor([5], dtype=torch.int32))}}

    # Sharded, as huggingface_hub writes it.
    sharded = {f"model.layers.{i}.weight": torch.arange(64, dtype=torch.float32).reshape(8, 8) * (i + 1) for i in range(4)}
    sharded["model.norm.bias"] = torch.linspace(-1, 1, 8).to(torch.bfloat16)
    os.makedirs(os.path.join(VALID, "sharded"))
    save_torch_state_dict(sharded, os.path.join(VALID, "sharded"), max_shard_size=600)
    expected["sharded"] = {"metadata": {"format": "pt"}, "tensors": {k: describe(v) for k, v in sharded.items()}}


def make_hostile():
    good_header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}
    good_data = bytes(16)
    good = st_bytes(good_header, good_data)
    cases = {}

    def case(name, content, fragment):
        write(os.path.join(HOSTILE, name), content)
        cases[name] = fragment

    def header_case(name, header, fragment, data=good_data):
        case(name, st_bytes(header, data), fragment)

    def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
        return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}

    case("empty.safetensors", b"", "smaller than the 8-byte header length")
    case("seven_bytes.safetensors", b"\x08\x00\x00\x00\x00\x00\x00", "smaller than the 8-byte header length")
    case("header_length_giant.safetensors", struct.pack("<Q", 2**40) + b"{}", "exceeds the limit")
    case("header_length_u64_max.safetensors", struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the limit")
    case("header_length_just_over_limit.safetensors", struct.pack("<Q", 100_000_001) + b"{}", "exceeds the limit")
    case("header_past_eof.safetensors", struct.pack("<Q", 1000) + b'{"a":1}', "past the end")
    case("truncated_header.safetensors", good[:20], "past the end")
    case("truncated_data.safetensors", good[:-3], "trailing or missing bytes")
    case("trailing_bytes_polyglot.safetensors", good + b"<html><script>alert(1)</script></html>", "trailing or missing bytes")
    case("bad_utf8.safetensors", st_bytes(b'{"a\xff\xfe":' + json.dumps(entry()).encode() + b"}", bytes(8)), "invalid UTF-8")
    case("not_json.safetensors", st_bytes(b"this is not json", b""), "not valid JSON")
    case("json_array.safetensors", st_bytes([1, 2, 3]), "not a JSON object")
    case("json_trailing_garbage.safetensors", st_bytes(b'{"a":' + json.dumps(entry()).encode() + b"}}", bytes(8)), "not valid JSON")
    case("duplicate_key.safetensors", st_bytes(b'{"a":' + json.dumps(entry()).encode() + b',"a":'
                                               + json.dumps(entry(offsets=(8, 16))).encode() + b"}", bytes(16)),
         'names "a" twice (duplicate key)')
    header_case("unknown_dtype.safetensors", {"a": entry(dtype="F33"), "b": good_header["b"]}, 'unknown or unsupported dtype "F33"')
    header_case("lowercase_dtype.safetensors", {"a": entry(dtype="f32"), "b": good_header["b"]}, 'unknown or unsupported dtype "f32"')
    header_case("newer_dtype_f4.safetensors", {"a": entry(dtype="F4", shape=(16,)), "b": good_header["b"]}, 'unknown or unsupported dtype "F4"')
    header_case("shape_offset_mismatch.safetensors", {"a": entry(shape=(3,)), "b": good_header["b"]}, "dtype and shape need 12")
    header_case("shape_overflow.safetensors", {"a": entry(shape=(2**62, 2**62)), "b": good_header["b"]}, "overflows")
    header_case("shape_overflow_bytes.safetensors", {"a": entry(shape=(2**61, 2)), "b": good_header["b"]}, "overflows")
    header_case("shape_huge_literal.safetensors", {"a": {"dtype": "F32", "shape": [10**30], "data_offsets": [0, 8]}, "b": good_header["b"]}, "overflows")
    header_case("shape_negative.safetensors", {"a": entry(shape=(-2,)), "b": good_header["b"]}, "is negative")
    header_case("shape_fractional.safetensors", {"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}, "b": good_header["b"]}, "expected non-negative integers")
    header_case("offsets_gap.safetensors", {"a": entry(), "b": entry(dtype="I64", shape=(1,), offsets=(12, 20))}, "gap or overlap", bytes(20))
    header_case("offsets_overlap.safetensors", {"a": entry(), "b": entry(dtype="I64", shape=(1,), offsets=(4, 12))}, "gap or overlap", bytes(12))
    header_case("offsets_not_from_zero.safetensors", {"a": entry(offsets=(4, 12)), "b": entry(dtype="I64", shape=(1,), offsets=(12, 20))}, "gap or overlap", bytes(20))
    header_case("offsets_reversed.safetensors", {"a": entry(offsets=(8, 0)), "b": good_header["b"]}, "is after end")
    header_case("offsets_one_value.safetensors", {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8]}, "b": good_header["b"]}, "two non-negative integers")
    header_case("offsets_negative.safetensors", {"a": entry(offsets=(-8, 0)), "b": good_header["b"]}, "two non-negative integers")
    header_case("offsets_past_buffer.safetensors", {"a": entry(), "b": entry(dtype="I64", shape=(1,), offsets=(8, 16))}, "trailing or missing bytes", bytes(10))
    header_case("metadata_not_string.safetensors", {"__metadata__": {"format": 1}, **good_header}, 'value of "format" must be a string')
    header_case("metadata_array.safetensors", {"__metadata__": ["pt"], **good_header}, "must be an object of strings")
    header_case("entry_not_object.safetensors", {"a": [0, 8], "b": good_header["b"]}, "entry must be an object")
    header_case("missing_dtype.safetensors", {"a": {"shape": [2], "data_offsets": [0, 8]}, "b": good_header["b"]}, 'missing or non-string "dtype"')
    header_case("missing_shape.safetensors", {"a": {"dtype": "F32", "data_offsets": [0, 8]}, "b": good_header["b"]}, 'missing or non-array "shape"')
    header_case("unknown_field.safetensors", {"a": {**entry(), "strides": [1]}, "b": good_header["b"]}, 'unknown field "strides"')
    case("nesting_bomb.safetensors", st_bytes(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "nesting deeper than")
    case("control_char_in_name.safetensors", st_bytes(b'{"a\x01":' + json.dumps(entry()).encode() + b"}", bytes(8)), "control character")
    case("lone_surrogate.safetensors", st_bytes(b'{"\\ud800":' + json.dumps(entry()).encode() + b"}", bytes(8)), "unpaired surrogate")

    # Sharded indexes: each a folder holding model.safetensors.index.json and shards.
    def sharded(name, index, shards, fragment):
        d = os.path.join(HOSTILE, name)
        os.makedirs(d)
        for fname, content in shards.items():
            write(os.path.join(d, fname), content)
        write(os.path.join(d, "model.safetensors.index.json"), index if isinstance(index, bytes) else json.dumps(index, indent=2).encode())
        cases[name] = fragment

    shard1 = st_bytes({"a": entry()}, bytes(8))
    shard2 = st_bytes({"b": entry(dtype="I64", shape=(1,))}, bytes(8))
    ok_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    two = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    sharded("index_missing_shard", {"metadata": {"total_size": 16}, "weight_map": ok_map}, {"model-00001-of-00002.safetensors": shard1}, "cannot be read")
    sharded("index_parent_path", {"weight_map": {"a": "../model-00001-of-00002.safetensors"}}, {}, "is not a plain relative file name")
    sharded("index_absolute_path", {"weight_map": {"a": "/etc/passwd"}}, {}, "is not a plain relative file name")
    sharded("index_tensor_absent", {"weight_map": {**ok_map, "c": "model-00002-of-00002.safetensors"}}, two, 'tensor "c" is absent from its shard')
    sharded("index_unlisted_tensor", {"weight_map": {"a": "model-00001-of-00002.safetensors"}, "metadata": {}},
            {"model-00001-of-00002.safetensors": st_bytes({"a": entry(), "z": entry(offsets=(8, 16))}, bytes(16))}, 'holds tensor "z" that weight_map does not list')
    sharded("index_total_size_wrong", {"metadata": {"total_size": 999}, "weight_map": ok_map}, two, "total_size is 999")
    sharded("index_not_json", b"{weight_map: nope}", two, "not valid JSON")
    sharded("index_no_weight_map", {"metadata": {}}, two, 'missing "weight_map"')
    sharded("index_bad_shard", {"weight_map": ok_map}, {**two, "model-00002-of-00002.safetensors": shard2[:-1]}, "trailing or missing bytes")
    return cases


def main():
    fresh_dirs(VALID, HOSTILE)
    expected = {}
    make_valid(expected)
    write_json(os.path.join(HERE, "valid.json"),
               {"generator": {"torch": torch.__version__, "safetensors": __import__("safetensors").__version__}, "files": expected})
    cases = make_hostile()
    write_json(os.path.join(HERE, "hostile.json"), cases)
    print(f"{len(expected)} valid fixtures, {len(cases)} hostile fixtures")


if __name__ == "__main__":
    main()
