#!/usr/bin/env python3
"""Malformed token shards for `arapack eval` (Fixtures/tokens/hostile/), each with the message fragment arapack
must print for it (hostile.json). The .npy files start from numpy's own np.save output and are then edited where
numpy would not write such a file; the Megatron files start from megatron-core's layout (Fixtures/tokens/megatron).

    python Fixtures/tokens/hostile_generate.py      # numpy (Fixtures/requirements.txt)
"""
import io
import json
import os
import struct

import numpy

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "hostile")
ROWS = numpy.load(os.path.join(HERE, "heldout_u32.npy"))[:4]


def saved(array):
    b = io.BytesIO()
    numpy.save(b, array)
    return b.getvalue()


def with_header(header_text, data):
    header = header_text.encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * (pad % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def idx(code, lengths, pointers, documents, magic=b"MMIDIDX\x00\x00", version=1, count=None):
    n = len(lengths) if count is None else count
    return (magic + struct.pack("<Q", version) + struct.pack("<B", code) + struct.pack("<Q", n) + struct.pack("<Q", len(documents))
            + struct.pack(f"<{len(lengths)}i", *lengths) + struct.pack(f"<{len(pointers)}q", *pointers)
            + struct.pack(f"<{len(documents)}q", *documents))


def main():
    os.makedirs(OUT, exist_ok=True)
    data = ROWS.astype("<u4").tobytes()
    too_large = ROWS.astype("<u4").copy()
    too_large[1, 5] = 600
    negative = ROWS.astype("<i4").copy()
    negative[2, 7] = -1
    rows = {
        "shape_past_data.npy": (with_header("{'descr': '<u4', 'fortran_order': False, 'shape': (5, 32), }", data),
                                "shape (5, 32) of <u4 takes 640 bytes, but 512 follow the header"),
        "trailing_bytes.npy": (saved(ROWS.astype(numpy.uint32)) + b"\0\0\0\0", "but 516 follow the header"),
        "id_past_vocabulary.npy": (saved(too_large), "token id 600 is outside the vocabulary (0..<512)"),
        "negative_id.npy": (saved(negative), "token id -1 is outside the vocabulary"),
        "fortran_order.npy": (saved(numpy.asfortranarray(ROWS.astype(numpy.uint32))), "header field fortran_order: True"),
        "float32.npy": (saved(ROWS.astype(numpy.float32)), "header field descr: '<f4'"),
        "object.npy": (with_header("{'descr': '|O', 'fortran_order': False, 'shape': (4, 32), }", data), "header field descr: '|O'"),
        "extra_key.npy": (with_header("{'descr': '<u4', 'fortran_order': False, 'shape': (4, 32), 'x': 1, }", data), "header field keys"),
        "three_dims.npy": (with_header("{'descr': '<u4', 'fortran_order': False, 'shape': (2, 2, 32), }", data), "header field shape"),
        "header_past_end.npy": (b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b"{}", "header field header length: 60000 bytes past the end"),
        "version_9.npy": (b"\x93NUMPY\x09\x00" + saved(ROWS)[8:], "header field version: 9.0"),
        "shape_overflow.npy": (with_header("{'descr': '<u4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", data), "header field shape"),
    }
    lengths, pointers = [32] * 4, [0, 128, 256, 384]
    megatron = {
        "pointer_outside.idx": (idx(4, lengths, [0, 128, 256, 500], [0, 1, 2, 3, 4]), "sequence 3 (pointer 500, 32 ids) leaves"),
        "count_overflow.idx": (idx(4, lengths, pointers, [0, 4], count=2 ** 61), "2305843009213693952 sequences and 2 documents need more bytes than the file's"),
        "float_ids.idx": (idx(7, lengths, pointers, [0, 4]), "header field dtype: code 7"),
        "bad_magic.idx": (idx(4, lengths, pointers, [0, 4], magic=b"MMIDIDY\x00\x00"), "header field magic"),
        "negative_length.idx": (idx(4, [32, -1, 32, 32], pointers, [0, 4]), "header field sequence_lengths[1]: -1"),
        "version_2.idx": (idx(4, lengths, pointers, [0, 4], version=2), "header field version: 2"),
    }
    expected = {}
    for name, (content, message) in rows.items():
        open(os.path.join(OUT, name), "wb").write(content)
        expected[name] = message
    for name, (content, message) in megatron.items():
        open(os.path.join(OUT, name), "wb").write(content)
        open(os.path.join(OUT, name[:-4] + ".bin"), "wb").write(data)
        expected[name] = message
    with open(os.path.join(HERE, "hostile.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
