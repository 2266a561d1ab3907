#!/usr/bin/env python3
"""Generates the torch.save fixtures with real PyTorch (versions in Fixtures/requirements.txt):
model checkpoints in every form a training run leaves (bare, training dict with AdamW state, bf16,
views, DDP / torch.compile prefixes, real 2-process FSDP2 and FSDP1 checkpoints on gloo (FSDP1 also with
its `_fsdp_wrapped_module.` names), legacy format),
damaged and malicious files. valid.json records each state dict's tensors as torch holds them;
hostile.json maps each refused file to the message fragment arapack must print.

    python Fixtures/torch/generate.py
"""
import io
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from arafusion import tiny_model  # noqa: E402
from fixturelib import describe, fresh_dirs, write_json  # noqa: E402

VALID = os.path.join(HERE, "valid")
HOSTILE = os.path.join(HERE, "hostile")
def record(expected, name, state_dict, key=None, **extra):
    groups = {}
    for k, v in state_dict.items():
        if isinstance(v, torch.Tensor):
            groups.setdefault((v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), v.stride()), []).append(k)
    expected[name] = {"state_dict_key": key,
                      "tensors": {k: describe(v) for k, v in state_dict.items() if isinstance(v, torch.Tensor)},
                      "shared": [g for g in groups.values() if len(g) > 1], **extra}


def training_dict(model, config, steps=2):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config["vocab_size"], (2, 8))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": steps, "config": config,
            "train_loss": float(loss.detach()), "val_loss": 3.25, "tokens_seen": 2 * 8 * steps}


def fsdp_worker(rank, world, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29513")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
    from torch.distributed.fsdp import fully_shard  # FSDP2: FSDP1 crashes on CPU-only torch builds
    model, config = tiny_model(seed=3)
    for layer in model.transformer.layers:
        fully_shard(layer)
    fsdp = fully_shard(model)
    opt = torch.optim.AdamW(fsdp.parameters(), lr=1e-3)
    ids = torch.randint(0, config["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(rank))
    loss = torch.nn.functional.cross_entropy(fsdp(ids).flatten(0, 1), ids.flatten())
    loss.backward()
    opt.step()
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(fsdp, options=options)
    osd = get_optimizer_state_dict(fsdp, opt, options=options)
    if rank == 0:
        torch.save({"model": msd, "optimizer": osd, "step": 1, "config": config}, out)
    dist.barrier()
    dist.destroy_process_group()


def fsdp1_worker(rank, world, full_out, names_out):
    """FSDP1 (FullyShardedDataParallel, each layer its own unit) on gloo: a full state dict training
    checkpoint, and the parameters under the names FSDP1 gives them (`_fsdp_wrapped_module.` at the root
    and inside every wrapped layer) as a custom loop saves them from `summon_full_params`: views into each
    unit's flat parameter, the tied pair one tensor."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29514")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    model, config = tiny_model(seed=4)
    fsdp = FSDP(model, device_id=torch.device("cpu"), use_orig_params=True,
                auto_wrap_policy=ModuleWrapPolicy({type(model.transformer.layers[0])}))
    opt = torch.optim.AdamW(fsdp.parameters(), lr=1e-3)
    ids = torch.randint(0, config["vocab_size"], (2, 8), generator=torch.Generator().manual_seed(rank))
    torch.nn.functional.cross_entropy(fsdp(ids).flatten(0, 1), ids.flatten()).backward()
    opt.step()
    # (offload_to_cpu / rank0_only crash this CPU-only build; the defaults gather on every rank.)
    with FSDP.state_dict_type(fsdp, StateDictType.FULL_STATE_DICT, FullStateDictConfig()):
        msd = fsdp.state_dict()
    osd = FSDP.optim_state_dict(fsdp, opt)
    with FSDP.summon_full_params(fsdp, writeback=False):
        named = dict(torch.nn.Module.named_parameters(fsdp, remove_duplicate=False))
        assert any(k.startswith("_fsdp_wrapped_module.") for k in named) and any(".layers.0._fsdp_wrapped_module." in k for k in named)
        if rank == 0:
            torch.save({"model": {k: v.detach() for k, v in named.items()}, "step": 1, "config": config}, names_out)
    if rank == 0:
        torch.save({"model": msd, "optimizer": osd, "step": 1, "config": config}, full_out)
    dist.barrier()
    dist.destroy_process_group()


def make_valid(expected):
    model, config = tiny_model()
    sd = model.state_dict()
    torch.save(sd, os.path.join(VALID, "bare_state_dict.pt"))
    record(expected, "bare_state_dict.pt", sd)

    td = training_dict(model, config)
    torch.save(td, os.path.join(VALID, "training_dict.pt"))
    record(expected, "training_dict.pt", td["model"], "model", step=2, optimizer_tensors=sum(
        isinstance(v, torch.Tensor) for s in td["optimizer"]["state"].values() for v in s.values()))

    bf = tiny_model(seed=1)[0].to(torch.bfloat16).state_dict()
    torch.save({"model_state_dict": bf, "epoch": 1}, os.path.join(VALID, "bf16.pt"))
    record(expected, "bf16.pt", bf, "model_state_dict")

    base = torch.arange(60, dtype=torch.float32).reshape(6, 10) / 3
    views = {"transposed": base.t(), "row_slice": base[2:5], "column_step": base[:, 1::3], "narrow_offset": base.reshape(-1)[7:19],
             "expanded": torch.arange(3, dtype=torch.float32).reshape(3, 1).expand(3, 4), "scalar": torch.tensor(2.5),
             "empty": torch.zeros(0, 3), "int64": torch.arange(5, dtype=torch.int64) - 2, "f16_view": base.half()[1:, ::2]}
    torch.save({"state_dict": views}, os.path.join(VALID, "views.pt"))
    record(expected, "views.pt", views, "state_dict")

    # Every typed storage class (Float … Bool) and the dtypes torch writes through _rebuild_tensor_v3.
    every = {"f32": torch.tensor([1.5, -2.0]), "f64": torch.tensor([0.1, -1e300], dtype=torch.float64),
             "f16": torch.tensor([65504.0, 6e-8], dtype=torch.float16), "bf16": torch.tensor([3.0, -0.5], dtype=torch.bfloat16),
             "i64": torch.tensor([-(2**63), 2**63 - 1]), "i32": torch.tensor([-(2**31), 7], dtype=torch.int32),
             "i16": torch.tensor([-32768, 5], dtype=torch.int16), "i8": torch.tensor([-128, 127], dtype=torch.int8),
             "u8": torch.tensor([0, 255], dtype=torch.uint8), "bool": torch.tensor([True, False]),
             "u16": torch.tensor([65535, 1], dtype=torch.uint16), "u32": torch.tensor([2**32 - 1, 0], dtype=torch.uint32),
             "u64": torch.tensor([2**64 - 1, 3], dtype=torch.uint64),
             "f8_e4m3": torch.tensor([448.0, -0.5]).to(torch.float8_e4m3fn), "f8_e5m2": torch.tensor([57344.0, 1.0]).to(torch.float8_e5m2)}
    torch.save(every, os.path.join(VALID, "all_dtypes.pt"))
    record(expected, "all_dtypes.pt", every)

    # Real wrappers: DDP (gloo, one process) gives `module.`; torch.compile gives `_orig_mod.`.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29512")
    dist.init_process_group("gloo", rank=0, world_size=1)
    m, _ = tiny_model(seed=2)
    ddp = torch.nn.parallel.DistributedDataParallel(m)
    torch.save(ddp.state_dict(), os.path.join(VALID, "ddp_module_prefix.pt"))
    record(expected, "ddp_module_prefix.pt", ddp.state_dict())
    compiled = torch.compile(m)
    torch.save({"model": compiled.state_dict()}, os.path.join(VALID, "compile_orig_mod_prefix.pt"))
    record(expected, "compile_orig_mod_prefix.pt", compiled.state_dict(), "model")
    stacked = torch.nn.parallel.DistributedDataParallel(torch.compile(m))
    torch.save({"model": stacked.state_dict()}, os.path.join(VALID, "ddp_compile_stacked_prefix.pt"))
    record(expected, "ddp_compile_stacked_prefix.pt", stacked.state_dict(), "model")
    dist.destroy_process_group()

    # The same checkpoint re-zipped three ways torch also reads: ZIP64 records, DEFLATE, big-endian data.
    src = os.path.join(VALID, "bare_state_dict.pt")
    saved = torch.load(src, weights_only=True)  # `sd` holds live parameters that training has since moved
    rezip(src, os.path.join(VALID, "zip64_records.pt"), zip64=True)
    rezip(src, os.path.join(VALID, "deflated.pt"), method=zipfile.ZIP_DEFLATED)
    rezip(src, os.path.join(VALID, "big_endian.pt"), big_endian=True)
    for name in ("zip64_records.pt", "deflated.pt", "big_endian.pt"):
        back = torch.load(os.path.join(VALID, name), weights_only=True)
        assert all(torch.equal(back[k], saved[k]) for k in saved), name
        record(expected, name, saved)

    # A real FSDP (fully_shard) full state dict: two processes on gloo; the tied pair arrives as two equal copies.
    out = os.path.join(VALID, "fsdp_full_state_dict.pt")
    mp.spawn(fsdp_worker, args=(2, out), nprocs=2, join=True)
    fsdp = torch.load(out, weights_only=True)
    record(expected, "fsdp_full_state_dict.pt", fsdp["model"], "model", step=1)

    # Real FSDP1 (FullyShardedDataParallel), two processes on gloo: full state dict, and `_fsdp_wrapped_module.` names.
    full, names = (os.path.join(VALID, n) for n in ("fsdp1_full_state_dict.pt", "fsdp1_wrapped_names.pt"))
    mp.spawn(fsdp1_worker, args=(2, full, names), nprocs=2, join=True)
    record(expected, "fsdp1_full_state_dict.pt", torch.load(full, weights_only=True)["model"], "model", step=1)
    record(expected, "fsdp1_wrapped_names.pt", torch.load(names, weights_only=True)["model"], "model", step=1)


def rezip(src, dst, method=zipfile.ZIP_STORED, zip64=False, big_endian=False):
    """Copies a torch checkpoint into a new zip: forced ZIP64 records, another compression method, or
    every storage byte-swapped with byteorder "big" (all storages of the source are float32)."""
    limit = zipfile.ZIP64_LIMIT
    if zip64:
        zipfile.ZIP64_LIMIT = 1  # every size and offset now goes through ZIP64 extra fields and end records
    try:
        with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", method) as out:
            for info in z.infolist():
                data = z.read(info.filename)
                if big_endian and "/data/" in info.filename:
                    data = np.frombuffer(data, dtype="<u4").byteswap().tobytes()
                if big_endian and info.filename.endswith("/byteorder"):
                    data = b"big"
                out.writestr(info.filename, data)
    finally:
        zipfile.ZIP64_LIMIT = limit


def zip_checkpoint(path, data_pkl, storages=None, name="archive"):
    """A torch-layout zip with a hand-made data.pkl (for malicious pickles torch would not write)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", data_pkl)
        z.writestr(f"{name}/byteorder", "little")
        for key, data in (storages or {}).items():
            z.writestr(f"{name}/data/{key}", data)
        z.writestr(f"{name}/version", "3\n")


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def make_hostile():
    cases = {}
    sentinel = "/tmp/arapack_pwned_by_fixture"

    def case(name, fragment):
        cases[name] = fragment

    model, _ = tiny_model()
    sd = model.state_dict()
    good = io.BytesIO()
    torch.save({"model": sd, "step": 1}, good)
    good = good.getvalue()

    torch.save({"model": sd, "hook": Evil(os.system, f"touch {sentinel}")}, os.path.join(HOSTILE, "reduce_os_system.pt"))
    case("reduce_os_system.pt", "global posix.system")
    torch.save({"model": sd, "x": Evil(eval, f"__import__('os').system('touch {sentinel}')")}, os.path.join(HOSTILE, "reduce_eval.pt"))
    case("reduce_eval.pt", "global __builtin__.eval")  # protocol 2 writes Python 2 module names
    import subprocess
    torch.save({"model": sd, "x": Evil(subprocess.check_output, ["touch", sentinel])}, os.path.join(HOSTILE, "reduce_subprocess.pt"))
    case("reduce_subprocess.pt", "global commands.check_output")

    # STACK_GLOBAL whose module and name come from the memo, split and re-fetched (protocol 4).
    p = bytearray(b"\x80\x04")
    p += b"\x8c\x02os\x94"            # memo 0 = 'os'
    p += b"\x8c\x06system\x94"        # memo 1 = 'system'
    p += b"\x30\x30"                  # POP POP: nothing left on the stack, names only in the memo
    p += b"h\x00h\x01\x93"            # BINGET 0, BINGET 1, STACK_GLOBAL -> os.system
    p += b"\x8c\x04true\x85R."        # ('true',) REDUCE STOP
    zip_checkpoint(os.path.join(HOSTILE, "stack_global_obfuscated.pt"), bytes(p))
    case("stack_global_obfuscated.pt", "global os.system")

    # Memo bomb: 64 levels of a list holding the previous level twice (2^64 logical elements).
    p = bytearray(b"\x80\x02]q\x000")
    for i in range(1, 65):
        p += b"]" + b"r" + struct.pack("<I", i) + b"(" + b"j" + struct.pack("<I", i - 1) + b"j" + struct.pack("<I", i - 1) + b"e0"
    p += b"j" + struct.pack("<I", 64) + b"."
    zip_checkpoint(os.path.join(HOSTILE, "memo_bomb.pt"), bytes(p))
    case("memo_bomb.pt", "holds a list, not a dict")

    # Numpy state next to the model: torch.load(weights_only=True) refuses it too.
    import numpy as np
    torch.save({"model": sd, "rng": np.random.get_state()}, os.path.join(HOSTILE, "numpy_rng_state.pt"))
    case("numpy_rng_state.pt", "global numpy")

    with open(os.path.join(HOSTILE, "truncated.pt"), "wb") as f:
        f.write(good[: len(good) // 2])
    case("truncated.pt", "no end-of-central-directory record")

    torch.save(sd, os.path.join(HOSTILE, "legacy_format.pt"), _use_new_zipfile_serialization=False)
    case("legacy_format.pt", "legacy (pre-1.6) torch.save format")

    # Storage that is shorter than the tensor that views it.
    z = zipfile.ZipFile(io.BytesIO(good))
    names = z.namelist()
    prefix = names[0].split("/")[0]
    key = sorted(n for n in names if "/data/" in n)[0]
    with zipfile.ZipFile(os.path.join(HOSTILE, "short_storage.pt"), "w") as out:
        for n in names:
            data = z.read(n)
            out.writestr(n, data[: len(data) // 2] if n == key else data)
    case("short_storage.pt", "the pickle declares")

    with zipfile.ZipFile(os.path.join(HOSTILE, "missing_storage.pt"), "w") as out:
        for n in names:
            if n != key:
                out.writestr(n, z.read(n))
    case("missing_storage.pt", "missing from the archive")

    with zipfile.ZipFile(os.path.join(HOSTILE, "path_traversal.pt"), "w") as out:
        for n in names:
            out.writestr(n, z.read(n))
        out.writestr("../../etc/evil", b"x")
    case("path_traversal.pt", "contains '..'")

    # A tensor whose stride reaches past its storage.
    p = pickle.dumps(None, protocol=2)
    zip_checkpoint(os.path.join(HOSTILE, "stride_out_of_bounds.pt"),
                   b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQK\x00K\x02K\x03\x86K\x03K\x01\x86\x89ccollections\nOrderedDict\n)RtRu.",
                   {"0": bytes(16)}, name="archive")
    case("stride_out_of_bounds.pt", "reach element 5 of a 4-element storage")

    # A broadcast view (stride 0) of 2^40 elements over a one-element storage: in bounds, but huge if gathered.
    zip_checkpoint(os.path.join(HOSTILE, "broadcast_bomb.pt"),
                   b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
                   b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x85K\x00\x85\x89ccollections\nOrderedDict\n)RtRu.",
                   {"0": bytes(4)}, name="archive")
    case("broadcast_bomb.pt", "would need more than")

    zip_checkpoint(os.path.join(HOSTILE, "no_state_dict.pt"), pickle.dumps({"step": 3, "note": "no tensors"}, protocol=2))
    case("no_state_dict.pt", "top-level keys are [step, note]")
    zip_checkpoint(os.path.join(HOSTILE, "unknown_opcode.pt"), b"\x80\x02}(X\x01\x00\x00\x00aI1\nu.")
    case("unknown_opcode.pt", "pickle opcode 0x49")

    # DEFLATE bomb: the directory says data.pkl is 100 bytes, the stream inflates to 1 MB.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("archive/data.pkl", pickle.dumps({"a": bytes(1 << 20)}, protocol=2))
    raw = bytearray(buf.getvalue())
    cd = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, cd + 24, 100)
    with open(os.path.join(HOSTILE, "deflate_bomb.pt"), "wb") as f:
        f.write(raw)
    case("deflate_bomb.pt", "inflates past the limit of 100 bytes")
    zip_checkpoint(os.path.join(HOSTILE, "pickle_truncated.pt"), b"\x80\x02}(X\xff\x00\x00\x00ab")
    case("pickle_truncated.pt", "pickle ends early")
    with open(os.path.join(HOSTILE, "not_a_zip.pt"), "wb") as f:
        f.write(b"PK\x03\x04" + bytes(40))
    case("not_a_zip.pt", "no end-of-central-directory record")
    assert not os.path.exists(sentinel)
    return cases


def main():
    fresh_dirs(VALID, HOSTILE)
    expected = {}
    make_valid(expected)
    write_json(os.path.join(HERE, "valid.json"), {"generator": {"torch": torch.__version__}, "files": expected})
    cases = make_hostile()
    write_json(os.path.join(HERE, "hostile.json"), cases)
    print(f"{len(expected)} valid, {len(cases)} hostile")


if __name__ == "__main__":
    main()
