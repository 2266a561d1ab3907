#!/usr/bin/env python3
"""Hostile GGUF files (issue 26), standard library only: each is a small valid GGUF (seed.gguf: one F32 and one Q8_0
tensor, a little metadata) with one thing wrong. Writes Fixtures/gguf/hostile/*.gguf and Fixtures/gguf/hostile.json
(file -> the fragment arapack's one-line error must carry), and Fixtures/fuzz/seeds/gguf/seed.gguf.

    python3 Fixtures/gguf/hostile_generate.py"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def s(text):
    b = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv_u32(key, v):
    return s(key) + struct.pack("<II", 4, v)


def kv_str(key, v):
    return s(key) + struct.pack("<I", 8) + s(v)


def info(name, dims, ggml_type, offset, n_dims=None):
    return s(name) + struct.pack("<I", len(dims) if n_dims is None else n_dims) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


def gguf(kvs=None, infos=None, data=None, version=3, tensor_count=None, kv_count=None, align=32):
    kvs = [kv_str("general.architecture", "gpt2"), kv_u32("general.alignment", 32)] if kvs is None else kvs
    if infos is None:
        infos = [info("a.weight", [32], 0, 0), info("b.weight", [32, 2], 8, 128)]
    if data is None:
        q8 = (struct.pack("<e", 0.5) + bytes(range(32))) * 2
        data = struct.pack("<32f", *[float(i) for i in range(32)]) + q8
    head = b"GGUF" + struct.pack("<IQQ", version, len(infos) if tensor_count is None else tensor_count,
                                 len(kvs) if kv_count is None else kv_count) + b"".join(kvs) + b"".join(infos)
    head += bytes((-len(head)) % align)
    return head + data


def main():
    valid = gguf()
    rows = {
        "tensors_2_60.gguf": (gguf(tensor_count=1 << 60), "tensor count 1152921504606846976 exceeds the limit of 65536"),
        "keys_2_60.gguf": (gguf(kv_count=1 << 60), "metadata count 1152921504606846976 exceeds the limit of 65536"),
        "key_length_2_62.gguf": (gguf(kvs=[struct.pack("<Q", 1 << 62) + b"general"]), "a key length 4611686018427387904 exceeds"),
        "array_2_61_strings.gguf": (gguf(kvs=[s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 61)]),
                                    "array length 2305843009213693952 exceeds what the file can hold"),
        "nested_array.gguf": (gguf(kvs=[s("x") + struct.pack("<IIQ", 9, 9, 1)]), "arrays of arrays are not read"),
        "unknown_value_type.gguf": (gguf(kvs=[s("x") + struct.pack("<I", 13)]), "value type 13 is not a GGUF scalar type"),
        "bool_2.gguf": (gguf(kvs=[s("x") + struct.pack("<IB", 7, 2)]), "a bool of 2"),
        "duplicate_key.gguf": (gguf(kvs=[kv_u32("general.alignment", 32), kv_u32("general.alignment", 32)]), "key general.alignment appears twice"),
        "alignment_3.gguf": (gguf(kvs=[kv_u32("general.alignment", 3)]), "general.alignment 3 is not a power of two"),
        "version_2.gguf": (gguf(version=2), "GGUF version 2; arapack reads version 3"),
        "five_dims.gguf": (gguf(infos=[info("a.weight", [1, 1, 1, 1, 32], 0, 0)]), "5 dimensions; 1 to 4"),
        "dim_zero.gguf": (gguf(infos=[info("a.weight", [0], 0, 0)]), "dimension 0 out of 1...2147483647"),
        "dims_overflow.gguf": (gguf(infos=[info("a.weight", [2147483647] * 4, 0, 0)]), "holds more values than the file can"),
        "q4_1.gguf": (gguf(infos=[info("a.weight", [32], 3, 0)]), "type 3; arapack reads F32, F16, Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, BF16"),
        "q4_k_rows_128.gguf": (gguf(infos=[info("a.weight", [128, 2], 12, 0)]), "rows of 128 are not whole Q4_K blocks"),
        "q6_k_rows_300.gguf": (gguf(infos=[info("a.weight", [300], 14, 0)]), "rows of 300 are not whole Q6_K blocks"),
        "q5_0_rows_48.gguf": (gguf(infos=[info("a.weight", [48], 6, 0)]), "rows of 48 are not whole Q5_0 blocks"),
        "q5_k_past_end.gguf": (gguf(infos=[info("a.weight", [32], 0, 0), info("b.weight", [256], 13, 128)]), "run past the end of the file"),
        "q8_rows_33.gguf": (gguf(infos=[info("a.weight", [33], 8, 0)]), "rows of 33 are not whole Q8_0 blocks"),
        "misaligned.gguf": (gguf(infos=[info("a.weight", [32], 0, 7)]), "offset 7 is not a multiple of 32"),
        "overlap.gguf": (gguf(infos=[info("a.weight", [32], 0, 0), info("b.weight", [32], 0, 64)]), "overlaps the tensor before it"),
        "past_end.gguf": (gguf(infos=[info("a.weight", [32], 0, 0), info("b.weight", [64], 0, 128)]), "run past the end of the file"),
        "duplicate_tensor.gguf": (gguf(infos=[info("a.weight", [32], 0, 0), info("a.weight", [32], 0, 128)]), "tensor a.weight appears twice"),
        "name_not_utf8.gguf": (gguf(infos=[info(b"\xff\xfe", [32], 0, 0)]), "a tensor name is not UTF-8"),
        "truncated.gguf": (valid[:40], "what the file can hold"),
        "llama_architecture.gguf": (gguf(kvs=[kv_str("general.architecture", "llama")], infos=[info("token_embd.weight", [32], 0, 0)]), "arapack reads the gpt2 architecture it writes"),
    }
    folder = os.path.join(HERE, "hostile")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    for name, (data, _) in rows.items():
        open(os.path.join(folder, name), "wb").write(data)
    with open(os.path.join(HERE, "hostile.json"), "w") as f:
        json.dump({name: fragment for name, (_, fragment) in rows.items()}, f, indent=1, sort_keys=True)
        f.write("\n")
    seeds = os.path.join(HERE, "..", "fuzz", "seeds", "gguf")
    os.makedirs(seeds, exist_ok=True)
    open(os.path.join(seeds, "seed.gguf"), "wb").write(valid)
    # A seed with every block type (one block each, bytes counting up), for the fuzzer to mutate.
    block_types = [(2, 32, 18), (6, 32, 22), (7, 32, 24), (8, 32, 34), (12, 256, 144), (13, 256, 176), (14, 256, 210)]
    infos, data = [], b""
    for i, (code, elements, size) in enumerate(block_types):
        infos.append(info(f"t{i}.weight", [elements], code, len(data)))
        data += bytes(j % 251 for j in range(size)) + bytes((-size) % 32)
    open(os.path.join(seeds, "blocks.gguf"), "wb").write(gguf(infos=infos, data=data))


if __name__ == "__main__":
    main()
