#!/usr/bin/env python3
"""Generates torch.distributed.checkpoint (DCP) fixtures with real PyTorch, 2 processes on gloo:
- full_shard/: FSDP2 (fully_shard) model + AdamW state saved with dcp.save: dim-0 shards per rank;
- no_shard/: the same model replicated on both ranks (HSDP with shard size 1, FSDP's NO_SHARD):
  one chunk per tensor, deduplicated across ranks by DCP's planner.
Each is recorded in valid.json with the tensors `dcp_to_torch_save` produces (the reference).

    python Fixtures/dcp/generate.py
"""
import os
import shutil
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "torch"))
from arafusion import tiny_model  # noqa: E402
from fixturelib import describe, write_json  # noqa: E402

VALID = os.path.join(HERE, "valid")
def worker(rank, world, out, mode, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    model, config = tiny_model(seed=5)
    if mode == "full_shard":
        mesh = init_device_mesh("cpu", (world,))
    else:
        mesh = init_device_mesh("cpu", (world, 1), mesh_dim_names=("replicate", "shard"))
    for layer in model.transformer.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
    loss.backward()
    opt.step()
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd, "step": 1}, checkpoint_id=out)
    dist.barrier()
    dist.destroy_process_group()


HOSTILE = os.path.join(HERE, "hostile")


def make_hostile():
    """Damaged copies of full_shard/, each broken once by editing the real Metadata with torch's classes."""
    import pickle
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
    shutil.rmtree(HOSTILE, ignore_errors=True)
    os.makedirs(HOSTILE)
    src = os.path.join(VALID, "full_shard")
    key = "model.transformer.layers.0.linear1.weight"
    cases = {}

    def copy(name):
        d = os.path.join(HOSTILE, name)
        shutil.copytree(src, d)
        return d

    def edit(name, change, fragment):
        d = copy(name)
        with open(os.path.join(d, ".metadata"), "rb") as f:
            meta = pickle.load(f)
        change(meta, d)
        with open(os.path.join(d, ".metadata"), "wb") as f:
            pickle.dump(meta, f)
        cases[name] = fragment

    d = copy("missing_distcp")
    os.remove(os.path.join(d, "__1_0.distcp"))
    cases["missing_distcp"] = "its file __1_0.distcp cannot be read"

    d = copy("truncated_distcp")
    with open(os.path.join(d, "__1_0.distcp"), "r+b") as f:
        f.truncate(1000)
    cases["truncated_distcp"] = "lie outside __1_0.distcp"

    def overlap(meta, d):
        chunks = meta.state_dict_metadata[key].chunks
        chunks[1] = ChunkStorageMetadata(offsets=torch.Size([16, 0]), sizes=chunks[1].sizes)
        for idx in list(meta.storage_data):
            if idx.fqn == key and idx.offset == torch.Size([32, 0]):
                info = meta.storage_data.pop(idx)
                meta.storage_data[type(idx)(fqn=key, offset=torch.Size([16, 0]), index=idx.index)] = info
    edit("overlapping_chunks", overlap, "overlap")

    def missing(meta, d):
        meta.state_dict_metadata[key].chunks.pop(1)
    edit("missing_chunk", missing, "chunks cover 1024 of 2048 elements")

    def escape(meta, d):
        for idx, info in meta.storage_data.items():
            if idx.fqn == key:
                info.relative_path = "../../full_shard/__0_0.distcp"
    edit("path_escape", escape, "is not a plain file name")

    def dtype_lie(meta, d):
        meta.state_dict_metadata[key].properties.dtype = torch.bfloat16
    edit("declared_dtype_mismatch", dtype_lie, "metadata declares BF16")

    d = copy("foreign_global")
    with open(os.path.join(d, ".metadata"), "wb") as f:
        f.write(b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x8c\x04true\x85R.")
    cases["foreign_global"] = "global os.system"
    return cases


def main():
    shutil.rmtree(VALID, ignore_errors=True)
    os.makedirs(VALID)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    expected = {}
    for i, mode in enumerate(["full_shard", "no_shard"]):
        out = os.path.join(VALID, mode)
        mp.spawn(worker, args=(2, out, mode, 29600 + i), nprocs=2, join=True)
        with tempfile.TemporaryDirectory() as tmp:
            ref = os.path.join(tmp, "ref.pt")
            dcp_to_torch_save(out, ref)
            sd = torch.load(ref, weights_only=True)
        expected[mode] = {"model": {k: describe(v) for k, v in sd["model"].items()}, "step": sd["step"],
                          "optim_tensors": sum(1 for s in sd["optim"]["state"].values() for v in s.values() if torch.is_tensor(v))}
    write_json(os.path.join(HERE, "valid.json"), {"generator": {"torch": torch.__version__}, "checkpoints": expected})
    cases = make_hostile()
    write_json(os.path.join(HERE, "hostile.json"), cases)
    print("ok", {k: len(v["model"]) for k, v in expected.items()}, len(cases), "hostile")


if __name__ == "__main__":
    main()
