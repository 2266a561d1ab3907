#!/usr/bin/env python3
"""Small inputs built to cost the most per byte (issue 27, item 3), made in seconds with the standard library only,
so that the test suite makes them instead of committing them:

    python3 Fixtures/hostile/cost_sweep.py KIND OUT BYTES [SOURCE]

KIND                  OUT is                                   SOURCE
json-numbers          a model config (`--config`): one array of BYTES/2 zeros
json-objects          a model config: one array of BYTES/3 empty objects
tokenizer-merges      a tokenizer folder: SOURCE's, its merges   a tokenizer folder (Fixtures/tokenizer/valid)
                      list grown to BYTES with pairs of vocabulary tokens
tokenizer-arrays      a tokenizer folder: merges of BYTES/3 empty arrays
dcp-dicts             a DCP folder: SOURCE's .distcp files and   a DCP folder (Fixtures/dcp/valid/full_shard)
                      a .metadata of BYTES empty dicts in a list
bundle-files          SOURCE with BYTES empty files added, and   a bundle folder (edited in place; OUT unused)
                      listed in its manifest if OUT is "listed"
zstd-claims           a .tar.zst of BYTES whose one zstd frame claims 2^60 bytes and holds RLE blocks of
                      128 KiB of zeros, 4 bytes each (a 1 MB file unpacks to 32 GiB)
archive-entries       a .tar.zst of BYTES empty files under one top folder (zstd raw blocks, uncompressed)
zstd-skippable        a .tar.zst: a skippable frame claiming 4 GiB - 1 bytes, then BYTES of nothing else
"""
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tarfile

CONFIG = '{"n_heads": 4, "activation": "gelu", "causal": true, "layer_norm_eps": 1e-5, "x": ['


def config(out, unit, size):
    count = max(1, (size - len(CONFIG) - 2) // len(unit))
    with open(out, "w") as f:
        f.write(CONFIG + (unit * count)[:-1] + "]}")


def tokenizer(out, source, size, merge_of):
    shutil.copytree(source, out)
    path = os.path.join(out, "tokenizer.json")
    tok = json.load(open(path, encoding="utf-8"))
    vocab = list(tok["model"]["vocab"])
    head = json.dumps(tok, ensure_ascii=False)
    merges = []
    grown = len(head.encode())
    i = 0
    while grown < size:
        merge = merge_of(vocab, i)
        merges.append(merge)
        grown += len(json.dumps(merge, ensure_ascii=False).encode()) + 2
        i += 1
    tok["model"]["merges"] = tok["model"]["merges"] + merges
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False, separators=(",", ":"))


def dcp(out, source, size):
    shutil.copytree(source, out)
    # PROTO 2, EMPTY_LIST, MARK, EMPTY_DICT × n, APPENDS, STOP
    with open(os.path.join(out, ".metadata"), "wb") as f:
        f.write(b"\x80\x02](" + b"}" * max(1, size - 6) + b"e.")


def zstd_rle(out, size):
    # Frame header: FCS field of 8 bytes (flag 3), no single segment, window 2^17 (exponent 7), FCS 2^60.
    frame = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0xC0, 7 << 3]) + struct.pack("<Q", 1 << 60))
    block = struct.pack("<I", (128 << 10) << 3 | 1 << 1)[:3] + b"\x00"  # RLE block of 128 KiB zeros, not the last
    frame += block * max(1, (size - len(frame)) // 4)
    frame[-4:-3] = bytes([frame[-4] | 1])  # the last block
    open(out, "wb").write(bytes(frame))


def zstd_raw(data):
    frame = bytearray(struct.pack("<I", 0xFD2FB528) + bytes([0x00, 7 << 3]))  # no content size, window 2^17
    blocks = [data[i:i + (128 << 10)] for i in range(0, len(data), 128 << 10)] or [b""]
    for i, block in enumerate(blocks):
        frame += struct.pack("<I", len(block) << 3 | (i == len(blocks) - 1))[:3] + block  # raw blocks
    return bytes(frame)


def archive_entries(out, count):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(count):
            info = tarfile.TarInfo("bundle/f%06d.json" % i)
            info.mtime = 0
            tar.addfile(info)
    open(out, "wb").write(zstd_raw(buffer.getvalue()))


def main():
    kind, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else None
    if kind == "json-numbers":
        config(out, "0,", size)
    elif kind == "json-objects":
        config(out, "{},", size)
    elif kind == "tokenizer-merges":
        tokenizer(out, source, size, lambda vocab, i: [vocab[i % len(vocab)], vocab[(i // len(vocab)) % len(vocab)]])
    elif kind == "tokenizer-arrays":
        tokenizer(out, source, size, lambda vocab, i: [])
    elif kind == "dcp-dicts":
        dcp(out, source, size)
    elif kind == "bundle-files":
        names = ["f%06d.json" % i for i in range(size)]
        for name in names:
            open(os.path.join(source, name), "wb").close()
        if out == "listed":
            path = os.path.join(source, "manifest.json")
            manifest = json.load(open(path))
            empty = hashlib.sha256(b"").hexdigest()
            manifest["files"] += [{"path": name, "size": 0, "sha256": empty} for name in names]
            json.dump(manifest, open(path, "w"), sort_keys=True)
    elif kind == "zstd-claims":
        zstd_rle(out, size)
    elif kind == "archive-entries":
        archive_entries(out, size)
    elif kind == "zstd-skippable":
        open(out, "wb").write(struct.pack("<II", 0x184D2A50, 0xFFFFFFFF) + bytes(max(0, size - 8)))
    else:
        sys.exit("unknown kind " + kind)


if __name__ == "__main__":
    main()
