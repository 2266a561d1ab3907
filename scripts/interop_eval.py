#!/usr/bin/env python3
"""`arapack eval` against PyTorch, numpy and llama.cpp on the trained twin's held-out shards. Prints one JSON line of
the figures each side computed, then "ok"; exit 1 naming the check that failed.

    interop_eval.py ARAPACK CHECKPOINT SHARDS.npy WORK

- loss: the training module in float32, F.cross_entropy(reduction="sum") over every next-token position of every
  row, divided by their count; arapack's within 1e-5 relative.
- For a bf16 and an int8 bundle arapack writes: the same definitions as llama-perplexity's, computed by numpy in
  float64 from PyTorch's logits (the bundle's weights read by safetensors, int8 dequantized as weight × scale, into
  the training module): mean KL, mean Δp and RMS Δp within 1e-6 absolute of arapack's; the same-top count exact but
  at positions whose top two logits are closer than float32 rounding can order (1e-5 of the logit scale).
- For a GGUF q8_0 file: llama.cpp's own logits (llama-cpp-python), against the training module's, give a mean KL
  within 5 % of arapack's (which computes the file with llama.cpp's GELU).
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

problems = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        problems.append(what)


def arapack(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL  arapack {' '.join(args)}: {r.stderr}")
        sys.exit(1)
    return r.stdout


def module(config, state):
    model = ARBaseline(**{**config, "dropout": 0.0})
    model.load_state_dict(state)
    return model.eval()


def bundle_state(folder):
    """The bundle's weights as the training module's float32 state dict (int8: weight × its per-row scale)."""
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    state = {}
    for name, t in tensors.items():
        if name.endswith("_scale"):
            continue
        key = name[len("model."):]
        t = t.float()
        if name + "_scale" in tensors:
            t = t * tensors[name + "_scale"].float()
        state[key] = t
    state["lm_head.weight"] = state["token_embedding.weight"]
    return state


def logits(model, rows):
    with torch.no_grad():
        return torch.cat([model(rows[i:i + 64]).double() for i in range(0, len(rows), 64)]).numpy()


def log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def statistics(base, q, rows):
    """llama-perplexity's definitions over every next-token position, in float64."""
    lp, lq = log_softmax(base[:, :-1]), log_softmax(q[:, :-1])
    kld = (np.exp(lp) * (lp - lq)).sum(-1).reshape(-1)
    nxt = rows[:, 1:].numpy()
    pick = lambda l: np.take_along_axis(l, nxt[..., None], -1)[..., 0].reshape(-1)
    dp = np.exp(pick(lq)) - np.exp(pick(lp))
    same = int((base[:, :-1].argmax(-1) == q[:, :-1].argmax(-1)).sum())
    # Positions whose top two logits lie closer than float32 rounding of two independent forward passes can tell
    # apart (1e-5 of the logit scale): there either side's argmax is a coin toss, not a property of the model.
    top2 = lambda l: np.sort(l[:, :-1], axis=-1)[..., -2:]
    margin = np.minimum(np.diff(top2(base), axis=-1)[..., 0], np.diff(top2(q), axis=-1)[..., 0])
    ties = int((margin < 1e-5 * np.abs(base[:, :-1]).max()).sum())
    return {"mean_kl": float(kld.mean()), "delta_p": float(dp.mean()), "delta_p_rms": float(np.sqrt((dp ** 2).mean())), "same_top": same,
            "near_ties": ties}


def main():
    binary, checkpoint, shards, work = sys.argv[1:5]
    ck = torch.load(checkpoint, weights_only=True)
    config = ck["config"]
    rows = torch.from_numpy(np.load(shards).astype(np.int64))
    base_model = module(config, ck["model"])
    with torch.no_grad():
        out = torch.cat([base_model(rows[i:i + 64]) for i in range(0, len(rows), 64)]).float()
        total = F.cross_entropy(out[:, :-1].flatten(0, 1), rows[:, 1:].flatten(), reduction="sum").item()
    count = rows[:, 1:].numel()
    torch_loss = total / count
    ours = json.loads(arapack(binary, "eval", checkpoint, "--tokens", shards, "--json"))
    report = {"torch_loss": torch_loss, "arapack_loss": ours["loss"]["value"], "tokens": count}
    check(ours["tokens"] == count, f"arapack scores the {count} next-token positions PyTorch does ({ours['tokens']})")
    check(abs(ours["loss"]["value"] - torch_loss) <= 1e-5 * abs(torch_loss), f"loss {ours['loss']['value']} = PyTorch's {torch_loss} within 1e-5 relative")
    base = logits(base_model, rows)
    for dtype in ("bf16", "int8"):
        folder = os.path.join(work, dtype)
        arapack(binary, "convert", checkpoint, folder, "--dtype", dtype, "--force")
        theirs = statistics(base, logits(module(config, bundle_state(folder)), rows), rows)
        c = json.loads(arapack(binary, "eval", folder, "--tokens", shards, "--against", checkpoint, "--json"))["comparison"]
        mine = {"mean_kl": c["kld"]["value"], "delta_p": c["delta_p"]["value"], "delta_p_rms": c["delta_p_rms"]["value"], "same_top": c["same_top_count"]}
        report[dtype] = {"numpy": theirs, "arapack": mine}
        for key in ("mean_kl", "delta_p", "delta_p_rms"):
            check(abs(mine[key] - theirs[key]) <= 1e-6, f"{dtype} {key}: arapack {mine[key]} = numpy's {theirs[key]} within 1e-6")
        check(abs(mine["same_top"] - theirs["same_top"]) <= theirs["near_ties"],
              f"{dtype} same top: arapack {mine['same_top']} = numpy's {theirs['same_top']} but for the {theirs['near_ties']} near ties")
    gguf = os.path.join(work, "q8_0.gguf")
    tokenizer = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "gguf", "bytelevel")
    arapack(binary, "convert", checkpoint, gguf, "--to", "gguf", "--dtype", "q8_0", "--tokenizer", tokenizer, "--force")
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=256, logits_all=True, n_threads=1, seed=0, verbose=False, type_k=0, type_v=0)
    got = []
    for row in rows.tolist():
        llm.reset()
        llm.eval(row)
        got.append(np.array(llm.scores[:len(row)], dtype=np.float64))
    llama_kl = statistics(base, np.stack(got), rows)["mean_kl"]
    c = json.loads(arapack(binary, "eval", gguf, "--tokens", shards, "--against", checkpoint, "--json"))["comparison"]
    report["q8_0"] = {"llama.cpp_mean_kl": llama_kl, "arapack_mean_kl": c["kld"]["value"]}
    check(abs(c["kld"]["value"] - llama_kl) <= 0.05 * llama_kl, f"q8_0 mean KL: arapack {c['kld']['value']} within 5% of llama.cpp's {llama_kl}")
    print(json.dumps(report))
    print("ok" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
