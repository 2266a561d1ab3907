#!/usr/bin/env python3
"""arapack's GGUF files in llama.cpp itself (llama-cpp-python 0.3.36) and in gguf-py (gguf 0.19.0), issue 26.
Prints one JSON line of measurements, then "ok"; exit 1 naming the check that failed.

  interop_gguf.py structure GGUF CHECKPOINT          gguf-py's reader: the gpt2 metadata, tensor names, types and
                                                     shapes, the tie stored once; F32 tensors bit-equal to the
                                                     checkpoint's, F16/BF16 to torch's casts, Q8_0 to gguf-py's quantizer
  interop_gguf.py tokenizer GGUF TOKENIZER_JSON TEXT llama.cpp's tokenizer gives tokenizers' ids on every line of TEXT
  interop_gguf.py logits GGUF CHECKPOINT [--tanh] [--max-kl X] [--min-top1 Y] [--max-abs Z]
                                                     llama.cpp's logits on held-out ids against the training module
                                                     (with --tanh: its GELU made the tanh approximation llama.cpp uses)
  interop_gguf.py greedy GGUF CHECKPOINT             llama.cpp's greedy continuation equals the training module's
  interop_gguf.py golden GGUF CHECKPOINT OUT          llama.cpp's logits on the held-out ids as a golden file
                                                     (ids I64 [N, L], logits F32 [N, L, V]) for arapack verify --golden
  interop_gguf.py whitespace GGUF TOKENIZER_JSON KIND text with leading, trailing and only whitespace: a byte-level
                                                     tokenizer gives tokenizers' ids; a Metaspace one too, but for text
                                                     that starts with a space, where llama.cpp gives one more ▁ first
  interop_gguf.py quantize GGUF F32_GGUF FTYPE PURE   llama.cpp's own llama_model_quantize makes F32_GGUF a FTYPE file
                                                     (PURE 1: every matrix one type, as llama-quantize --pure); every
                                                     tensor of GGUF has the type and the bytes of llama.cpp's
  interop_gguf.py dequantize GGUF OUT                 gguf-py's dequantize of every tensor, float32, into a safetensors
  interop_gguf.py twin OUT [D LAYERS FFN]             a seeded random AraFusion AR checkpoint (torch.save, training
                                                     dict) of the trained twin's vocabulary and positions, d 256 by default
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures")


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def training_module(checkpoint, tanh=False):
    ck = torch.load(checkpoint, weights_only=True)
    config = {**ck["config"], "dropout": 0.0}
    model = ARBaseline(**config)
    model.load_state_dict(ck["model"])
    model.eval()
    if tanh:
        for layer in model.transformer.layers:
            layer.activation = lambda x: F.gelu(x, approximate="tanh")
            layer.activation_relu_or_gelu = 0  # (else torch's fused path ignores the Python activation)
    return model, config, ck["model"]


def probes(config):
    """Held-out ids: the trained twin's held-out ayat, else seeded random ids of the full context."""
    if config["vocab_size"] == 512 and config["max_seq_len"] == 32:
        from safetensors.torch import load_file
        return load_file(os.path.join(FIXTURES, "trained", "heldout.safetensors"))["ids"][:32].tolist()
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, config["vocab_size"], (16, config["max_seq_len"]), generator=g).tolist()


# The key/value cache in float32 (llama.cpp's default is float16) with ARAPACK_KV_F32=1.
KV = {"type_k": 0, "type_v": 0} if os.environ.get("ARAPACK_KV_F32") else {}


def llama(path, config=None, vocab_only=False):
    from llama_cpp import Llama
    return Llama(model_path=path, n_ctx=max(config["max_seq_len"], 256) if config else 512, logits_all=not vocab_only,
                 vocab_only=vocab_only, n_threads=1, seed=0, verbose=False, **KV)


def log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def logits(args):
    path, checkpoint = args[0], args[1]
    flags = [a for a in args[2:] if a != "--tanh"]
    opts = dict(zip(flags[0::2], flags[1::2]))
    model, config, _ = training_module(checkpoint, tanh="--tanh" in args)
    llm = llama(path, config)
    kls, top1, worst, nll_ref, nll_got, count = [], [], 0.0, 0.0, 0.0, 0
    for row in probes(config):
        llm.reset()
        llm.eval(row)
        got = np.array(llm.scores[:len(row)], dtype=np.float64)
        with torch.no_grad():
            ref = model(torch.tensor([row]))[0].double().numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
        lp, lq = log_softmax(ref), log_softmax(got)
        kls.append(float((np.exp(lp) * (lp - lq)).sum(-1).mean()))
        top1.append(float((got.argmax(-1) == ref.argmax(-1)).mean()))
        nxt = np.array(row[1:])
        nll_ref -= lp[np.arange(len(nxt)), nxt].sum()
        nll_got -= lq[np.arange(len(nxt)), nxt].sum()
        count += len(nxt)
    report = {"max_abs_diff": worst, "mean_kl": float(np.mean(kls)), "top1": float(np.mean(top1)),
              "perplexity_reference": float(np.exp(nll_ref / count)), "perplexity_gguf": float(np.exp(nll_got / count))}
    print(json.dumps(report))
    if report["mean_kl"] > float(opts.get("--max-kl", "inf")):
        fail(f"mean KL {report['mean_kl']} > {opts['--max-kl']}")
    if report["top1"] < float(opts.get("--min-top1", "0")):
        fail(f"top-1 agreement {report['top1']} < {opts['--min-top1']}")
    if worst > float(opts.get("--max-abs", "inf")):
        fail(f"max |logit difference| {worst} > {opts['--max-abs']}")


def golden(args):
    path, checkpoint, out = args
    from safetensors.torch import save_file
    _, config, _ = training_module(checkpoint)
    llm = llama(path, config)
    rows = probes(config)
    logits = []
    for row in rows:
        llm.reset()
        llm.eval(row)
        logits.append(np.array(llm.scores[:len(row)], dtype=np.float32))
    save_file({"ids": torch.tensor(rows, dtype=torch.int64), "logits": torch.from_numpy(np.stack(logits))}, out)
    print(json.dumps({"probes": len(rows), "length": len(rows[0])}))


def greedy(args):
    path, checkpoint = args
    model, config, _ = training_module(checkpoint)
    llm = llama(path, config)
    same = 0
    rows = probes(config)[:8]
    for row in rows:
        prompt = row[:8]
        llm.reset()
        llm.eval(prompt)
        mine = list(prompt)
        while len(mine) < config["max_seq_len"]:
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            mine.append(nxt)
            if len(mine) < config["max_seq_len"]:
                llm.eval([nxt])
        ref = list(prompt)
        with torch.no_grad():
            while len(ref) < config["max_seq_len"]:
                ref.append(int(model(torch.tensor([ref]))[0, -1].argmax()))
        if mine != ref:
            fail(f"greedy continuation of {prompt} differs: llama.cpp {mine[8:]}, training module {ref[8:]}")
        same += 1
    print(json.dumps({"greedy_sequences_equal": same, "new_tokens_each": config["max_seq_len"] - 8}))


def tokenizer(args):
    path, tokenizer_json, text = args
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    llm = llama(path, vocab_only=True)
    lines = open(text, encoding="utf-8").read().splitlines()
    differing, tokens, words = [], 0, 0
    for line in lines:
        want = tok.encode(line, add_special_tokens=False).ids
        got = llm.tokenize(line.encode("utf-8"), add_bos=False, special=False)
        tokens += len(want)
        words += len(line.split())
        if want != got:
            differing.append(line)
    print(json.dumps({"lines": len(lines), "words": words, "tokens": tokens, "differing": len(differing)}))
    if differing:
        fail(f"{len(differing)} of {len(lines)} lines tokenize differently, first: {differing[0][:80]!r}")


def structure(args):
    path, checkpoint = args
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import quantize
    _, config, state = training_module(checkpoint)
    r = GGUFReader(path)

    def field(key):
        f = r.get_field(key)
        if f is None:
            fail(f"no metadata {key}")
        return f.contents()

    expected = {"general.architecture": "gpt2", "gpt2.context_length": config["max_seq_len"],
                "gpt2.embedding_length": config["d_model"], "gpt2.block_count": config["n_layers"],
                "gpt2.feed_forward_length": config["d_ff"], "gpt2.attention.head_count": config["n_heads"],
                "general.alignment": 32, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                "tokenizer.ggml.padding_token_id": 5}
    for key, value in expected.items():
        if field(key) != value:
            fail(f"{key} is {field(key)!r}, expected {value!r}")
    if abs(field("gpt2.attention.layer_norm_epsilon") - config["layer_norm_eps"]) > 1e-12:
        fail("layer_norm_epsilon")
    if len(field("tokenizer.ggml.tokens")) != config["vocab_size"]:
        fail("tokenizer.ggml.tokens does not have vocab_size entries")
    names = {
        "token_embd.weight": "token_embedding.weight", "position_embd.weight": "position_embedding.weight",
        "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias",
    }
    per_layer = {"attn_norm": "norm1", "ffn_norm": "norm2", "attn_qkv.weight": "self_attn.in_proj_weight",
                 "attn_qkv.bias": "self_attn.in_proj_bias", "attn_output": "self_attn.out_proj", "ffn_up": "linear1",
                 "ffn_down": "linear2"}
    for i in range(config["n_layers"]):
        for g, t in per_layer.items():
            if g.endswith(("weight", "bias")):
                names[f"blk.{i}.{g}"] = f"transformer.layers.{i}.{t}"
            else:
                for s in ("weight", "bias"):
                    names[f"blk.{i}.{g}.{s}"] = f"transformer.layers.{i}.{t}.{s}"
    found = {t.name: t for t in r.tensors}
    if set(found) != set(names):
        fail(f"tensors {sorted(set(found) ^ set(names))} differ from llama.cpp's gpt2 set (output.weight must be absent: tied)")
    types = {}
    for name, t in found.items():
        src = state[names[name]].float()
        if list(reversed([int(n) for n in t.shape])) != list(src.shape):
            fail(f"{name}: shape {list(t.shape)} (innermost first) is not {list(src.shape)} reversed")
        qtype = GGMLQuantizationType(t.tensor_type)
        types[name] = qtype.name
        raw = np.asarray(t.data).view(np.uint8).tobytes()
        if qtype == GGMLQuantizationType.F32:
            want = src.numpy().tobytes()
        elif qtype == GGMLQuantizationType.F16:
            want = src.to(torch.float16).numpy().tobytes()
        elif qtype == GGMLQuantizationType.BF16:
            want = src.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        elif qtype == GGMLQuantizationType.Q8_0:
            want = quantize(src.numpy(), GGMLQuantizationType.Q8_0).tobytes()
        else:
            fail(f"{name}: type {qtype.name}")
        if raw != want:
            fail(f"{name} ({qtype.name}): bytes differ from the reference's")
        if (src.dim() == 1 or name == "position_embd.weight") and qtype != GGMLQuantizationType.F32:
            fail(f"{name}: vectors and positions are F32, found {qtype.name}")
    print(json.dumps({"tensors": len(found), "types": sorted(set(types.values())), "file_type": field("general.file_type")}))


def whitespace(args):
    path, tokenizer_json, kind = args
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    llm = llama(path, vocab_only=True)
    lines = ["", " ", "  ", "\t", " \t", "كلمة", " كلمة", "  كلمة", "\tكلمة", " \tكلمة", "كلمة ", "كلمة  ", "كلمة\t",
             "ب ت", "ب  ت", " ب ت ", "a b", " a b", "\u00a0كلمة"]
    rows = []
    for line in lines:
        want = tok.encode(line, add_special_tokens=False).ids
        got = llm.tokenize(line.encode("utf-8"), add_bos=False, special=False)
        if kind == "metaspace" and line.startswith(" "):
            expected = [tok.token_to_id("▁")] + want
        else:
            expected = want
        if got != expected:
            fail(f"{kind} {line!r}: llama.cpp {got}, expected {expected} (tokenizers {want})")
        rows.append({"text": line, "tokenizers": want, "llama.cpp": got})
    print(json.dumps({"lines": len(rows), "differing": sum(r["tokenizers"] != r["llama.cpp"] for r in rows)}, ensure_ascii=False))


def quantize_check(args):
    import ctypes
    import tempfile

    import llama_cpp
    from gguf import GGUFReader

    ours, f32, ftype, pure = args[0], args[1], int(args[2]), args[3] == "1"
    with tempfile.TemporaryDirectory() as tmp:
        reference = os.path.join(tmp, "llama.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.pure = pure
        params.nthread = 2
        if llama_cpp.llama_model_quantize(f32.encode(), reference.encode(), ctypes.byref(params)) != 0:
            fail(f"llama_model_quantize refused {f32} (ftype {ftype})")
        theirs = {t.name: t for t in GGUFReader(reference).tensors}
        mine = {t.name: t for t in GGUFReader(ours).tensors}
        if sorted(theirs) != sorted(mine):
            fail(f"tensor names differ: llama.cpp {sorted(theirs)}, arapack {sorted(mine)}")
        types = {}
        for name, t in theirs.items():
            m = mine[name]
            if m.tensor_type != t.tensor_type:
                fail(f"{name}: arapack wrote {m.tensor_type.name}, llama.cpp {t.tensor_type.name}")
            if np.asarray(m.data).view(np.uint8).tobytes() != np.asarray(t.data).view(np.uint8).tobytes():
                fail(f"{name} ({t.tensor_type.name}): bytes differ from llama.cpp's")
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        file_type = GGUFReader(reference).get_field("general.file_type").contents()
        ours_type = GGUFReader(ours).get_field("general.file_type").contents()
        if file_type != ours_type:
            fail(f"general.file_type: arapack {ours_type}, llama.cpp {file_type}")
    print(json.dumps({"tensors": len(theirs), "types": types, "file_type": file_type}))


def dequantize_all(args):
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    out = {}
    for t in GGUFReader(args[0]).tensors:
        values = dequantize(np.asarray(t.data), t.tensor_type)
        out[t.name] = np.ascontiguousarray(values.astype(np.float32).reshape(list(reversed([int(n) for n in t.shape]))))
    save_file(out, args[1])
    print(json.dumps({"tensors": len(out)}))


def twin(args):
    d, layers, ffn = (int(a) for a in args[1:4]) if len(args) >= 4 else (256, 8, 512)
    torch.manual_seed(256)
    config = dict(vocab_size=512, d_model=d, n_layers=layers, n_heads=4, d_ff=ffn, max_seq_len=32, dropout=0.0,
                  activation="gelu", causal=True, layer_norm_eps=1e-5)
    model = ARBaseline(**config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.02)
    torch.save({"model": model.state_dict(), "config": config}, args[0])
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    {"structure": structure, "tokenizer": tokenizer, "logits": logits, "greedy": greedy, "golden": golden,
     "whitespace": whitespace, "quantize": quantize_check, "dequantize": dequantize_all, "twin": twin}[command](args)
    print("ok")


if __name__ == "__main__":
    main()
