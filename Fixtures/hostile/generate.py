#!/usr/bin/env python3
"""Hostile input, round two (issue 15): files that are well-formed at the byte level and hostile above it,
deep structures, bombs and parser differentials, made with real PyTorch and Python's zipfile (versions in
../requirements.txt; `zstd` from the system for the archive bomb).

    python Fixtures/hostile/generate.py

Writes the files into hostile/ and hostile.json: file -> {"message": fragment arapack must print (absent: the file
is accepted), "args": extra convert arguments, "command": another command than convert (optional)}.
Tests/ArapackCLITests/HostileTableTests runs each: exit 2 with one line naming the file and what is wrong and
nothing at DST (or, for accepted files, exit 0), peak memory under the bound ROBUSTNESS.md states.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from arafusion import tiny_model  # noqa: E402
from fixturelib import fresh_dirs, write_json  # noqa: E402

OUT = os.path.join(HERE, "hostile")
DEPTH = 100_000


def checkpoint_bytes():
    model, config = tiny_model()
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "config": config, "step": 1}, buf)
    return buf.getvalue()


def entries(data):
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(path, items, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", method) as out:
        for name, data in items:
            out.writestr(name, data)


def with_extra(data_pkl, extra):
    """data.pkl of a training dict with one more key, `x`, whose value is the pickle opcodes `extra`
    (inserted before the final SETITEMS ... STOP: the dict is open on the stack there)."""
    assert data_pkl.endswith(b"u.")
    return data_pkl[:-2] + b"X\x01\x00\x00\x00x" + extra + b"u."


def string(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def main():
    fresh_dirs(OUT)
    cases = {}
    good = checkpoint_bytes()
    items = entries(good)
    pkl_name = next(n for n, _ in items if n.endswith("/data.pkl"))
    prefix = pkl_name.split("/")[0]
    pkl = dict(items)[pkl_name]

    def replaced(name, new_pkl, method=zipfile.ZIP_STORED):
        write_zip(os.path.join(OUT, name), [(n, new_pkl if n == pkl_name else d) for n, d in items], method)

    # Deep structures: 100,000 levels from a few hundred kilobytes.
    # (DEFLATE-compressed, as torch.save never does but PyTorch's reader accepts: a few kilobytes each)
    replaced("deep_tuples.pt", with_extra(pkl, b")" + b"\x85" * DEPTH), zipfile.ZIP_DEFLATED)
    cases["deep_tuples.pt"] = {"message": "values nested in values"}
    replaced("deep_lists_posix_system.pt", with_extra(pkl, b"cposix\nsystem\n0" + b"]" * DEPTH + b"a" * (DEPTH - 1)), zipfile.ZIP_DEFLATED)
    cases["deep_lists_posix_system.pt"] = {"message": "global posix.system"}
    # A chain of Parameters, each rebuilt around the previous one (torch._utils._rebuild_parameter): the global
    # pushed 100,000 times, the innermost value, then (value, False, ()) TUPLE3 REDUCE 100,000 times.
    prog = b"ctorch._utils\n_rebuild_parameter\nq\x00" + b"0" + b"h\x00" * DEPTH + b"N" + b"\x89)\x87R" * DEPTH
    replaced("deep_parameter_chain.pt", with_extra(pkl, prog), zipfile.ZIP_DEFLATED)
    cases["deep_parameter_chain.pt"] = {}  # accepted (outside the model, as torch loads it), without running the stack out

    # Bombs: a 256 MiB BINSTRING in a DEFLATE-compressed data.pkl (about 260 KB on disk).
    big = 256 << 20
    bomb = with_extra(pkl, b"T" + struct.pack("<I", big) + bytes(big))
    replaced("binstring_bomb.pt", bomb, zipfile.ZIP_DEFLATED)
    # refused unread: data.pkl's declared size is past the pickle cap (4 MiB); 1 GiB and 10 GiB pickles, in 1 MB and
    # 10 MB files, are made by pickle_bomb.py when the tests run (HostileTableTests)
    cases["binstring_bomb.pt"] = {"message": "arapack reads checkpoint pickles of at most 4194304"}
    del bomb
    # Several DEFLATE storages, each under the old per-entry cap, that add up past the archive's budget:
    # eight 160 MiB tensors of zeros in the state dict, read by `inspect --check-data`.
    model, config = tiny_model()
    sd = dict(model.state_dict())
    for i in range(8):
        sd[f"bomb{i}"] = torch.zeros(40 << 20)
    buf = io.BytesIO()
    torch.save({"model": sd, "config": config, "step": 1}, buf)
    del sd
    write_zip(os.path.join(OUT, "storages_bomb.pt"), entries(buf.getvalue()), zipfile.ZIP_DEFLATED)
    del buf
    # The archive's budget is 16 × its size, at least 64 MiB (issue 27): refused at the first storage, nothing inflated.
    cases["storages_bomb.pt"] = {"message": "would inflate past 67108864 bytes in all", "command": ["inspect", "--check-data"]}

    # Parser differentials: a second entry whose name equals another ignoring ASCII case; PyTorch's reader
    # resolves names case-insensitively and could read the shadow.
    evil = pickle.dumps({"model": {}}, protocol=2)
    for name, shadow in [("case_data_pkl.pt", f"{prefix}/DATA.PKL"), ("case_data_pkl_mixed.pt", f"{prefix}/Data.Pkl"),
                         ("case_storage.pt", next(n for n, _ in items if "/data/" in n).replace("/data/", "/DATA/")),
                         ("case_byteorder.pt", f"{prefix}/BYTEORDER")]:
        write_zip(os.path.join(OUT, name), items + [(shadow, b"big" if "BYTEORDER" in shadow else evil)])
        cases[name] = {"message": "differ only in letter case"}

    # Output integrity: a global whose name carries an ANSI escape and a newline that would forge a report line.
    replaced("escape_in_global.pt", with_extra(pkl, b"cposix\nsystem\x1b[2K\r3 safe, 0 unknown, 0 dangerous\n0N"))
    cases["escape_in_global.pt"] = {"message": "posix.system\\u{1b}[2K\\u{d}3 safe, 0 unknown, 0 dangerous at byte"}

    # DCP: a .metadata nested 100,000 deep (tuples), in a folder of otherwise valid files.
    src = os.path.join(os.path.dirname(HERE), "dcp", "valid", "full_shard")
    dcp = os.path.join(OUT, "deep_metadata_dcp")
    shutil.copytree(src, dcp)
    meta = open(os.path.join(dcp, ".metadata"), "rb").read()
    assert meta.endswith(b".")
    with open(os.path.join(dcp, ".metadata"), "wb") as f:
        f.write(meta[:-1] + b"0)" + b"\x85" * DEPTH + b"0.")
    cases["deep_metadata_dcp"] = {"message": "values nested in values", "args": ["--config", "heads.json"]}

    # Archive bomb: a bundle archive whose tar says model.safetensors holds 1 GiB (zeros, ~32 KB compressed).
    tar_path = os.path.join(OUT, "bomb.tar")
    with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as t:
        d = tarfile.TarInfo("bomb")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        t.addfile(d)
        info = tarfile.TarInfo("bomb/model.safetensors")
        info.size = 1 << 30

        class Zeros(io.RawIOBase):
            def __init__(self, n):
                self.left = n

            def readable(self):
                return True

            def readinto(self, b):
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n
        t.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
    subprocess.run(["zstd", "-q", "-19", "-f", "--rm", tar_path, "-o", os.path.join(OUT, "bomb.tar.zst")], check=True)
    # convert verifies a source archive as a stream before unpacking it: the bomb is refused there, nothing
    # unpacked (unpacking itself stops at 8 x the archive + 256 MiB: VerifyTests).
    cases["bomb.tar.zst"] = {"message": "model.safetensors: header is not valid JSON"}

    write_json(os.path.join(HERE, "hostile.json"), cases)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"{len(cases)} hostile cases, {total:,} bytes")


if __name__ == "__main__":
    main()
