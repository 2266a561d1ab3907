#!/usr/bin/env python3
"""Small torch.save files whose DEFLATE'd data.pkl inflates to gigabytes (issue 27), made in seconds with the
standard library only, so that the test suite makes them instead of committing them:

    python3 Fixtures/hostile/pickle_bomb.py SOURCE.pt OUT.pt string|opcodes INFLATED_BYTES

SOURCE.pt is a real training checkpoint (Fixtures/torch/valid/training_dict.pt); OUT.pt is that checkpoint with
one more key in its training dict, `x`, whose value is either one string of INFLATED_BYTES zero bytes (BINSTRING
up to 4 GiB, BINBYTES8 past it) or INFLATED_BYTES of pickle opcodes (NONE, POP, repeated), its data.pkl
DEFLATE-compressed: a 1 GiB pickle takes about 1 MB on disk, 10 GiB about 10 MB. The DEFLATE stream is one
compressed 1 MiB block repeated (each ends with a full flush, so none refers back past it); the sizes and CRC-32
in the zip directory are the true ones (ZIP64 past 4 GiB)."""
import struct
import sys
import zipfile
import zlib

CHUNK = 1 << 20


def pickle_parts(data_pkl, kind, size):
    """The inflated data.pkl as (head, repeated chunk, count, tail)."""
    assert data_pkl.endswith(b"u.")
    head = data_pkl[:-2] + b"X\x01\x00\x00\x00x"
    if kind == "string":
        head += (b"T" + struct.pack("<I", size)) if size < 1 << 32 else (b"\x8e" + struct.pack("<Q", size))
        body, tail = bytes(CHUNK), b""
    else:
        body, tail = b"N0" * (CHUNK // 2), b"N"
    count, rest = divmod(size, CHUNK)
    return head, body, count, body[:rest] + tail + b"u."


def deflated(head, body, count, tail):
    """(compressed pieces as a list of (bytes, repeat)), the inflated size and its CRC-32."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    piece = c.compress(body) + c.flush(zlib.Z_FULL_FLUSH)
    last = c.compress(tail) + c.flush()
    crc = zlib.crc32(head)
    for _ in range(count):
        crc = zlib.crc32(body, crc)
    crc = zlib.crc32(tail, crc)
    return [(first, 1), (piece, count), (last, 1)], len(head) + count * len(body) + len(tail), crc


def write(out, entries):
    """A zip of `entries`: (name, method, crc, inflated size, [(bytes, repeat)]); ZIP64 fields where a size needs them."""
    central, offset = [], 0
    with open(out, "wb") as f:
        for name, method, crc, size, pieces in entries:
            csize = sum(len(p) * n for p, n in pieces)
            big = size >= 0xFFFFFFFF or csize >= 0xFFFFFFFF
            extra = struct.pack("<HHQQ", 1, 16, size, csize) if big else b""
            sizes = (0xFFFFFFFF, 0xFFFFFFFF) if big else (csize, size)
            fields = struct.pack("<HHHHHIII", 45, 0, method, 0, 0x21, crc, *sizes)
            local = struct.pack("<I", 0x04034B50) + fields + struct.pack("<HH", len(name), len(extra)) + name + extra
            f.write(local)
            for p, n in pieces:
                for _ in range(n):
                    f.write(p)
            central.append(struct.pack("<IH", 0x02014B50, 45) + fields + struct.pack("<HHHHHII", len(name), len(extra), 0, 0, 0, 0, offset)
                           + name + extra)
            offset += len(local) + csize
        directory = b"".join(central)
        f.write(directory)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), offset, 0))


def main():
    source, out, kind, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    entries = []
    with zipfile.ZipFile(source) as z:
        for info in z.infolist():
            data = z.read(info.filename)
            if info.filename.endswith("/data.pkl"):
                pieces, inflated, crc = deflated(*pickle_parts(data, kind, size))
                entries.append((info.filename.encode(), zipfile.ZIP_DEFLATED, crc, inflated, pieces))
            else:
                entries.append((info.filename.encode(), zipfile.ZIP_STORED, zlib.crc32(data), len(data), [(data, 1)]))
    write(out, entries)


if __name__ == "__main__":
    main()
