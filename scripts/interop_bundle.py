#!/usr/bin/env python3
"""Interop check for release bundles: the bundle's model.safetensors (or shards) and config.json load in
PyTorch through the real `safetensors` package into an ARBaseline written from docs/model-family.md, and give
the same logits as the source checkpoint; the tokenizer files load with HF `tokenizers`.

    python scripts/interop_bundle.py BUNDLE SOURCE.pt [--exact]

SOURCE.pt is the torch.save checkpoint the bundle was made from (state dict bare or under model /
model_state_dict / state_dict / module, any wrapper prefixes). With --exact (lossless bundles) the logits
must be bit-identical; otherwise they are reported. Exits 1 on any mismatch.
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402
from interop_torch import state_dict  # noqa: E402

WRAPPERS = ("module.", "_orig_mod.")


def training_config(hf):
    return dict(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                n_heads=hf["num_attention_heads"], d_ff=hf["intermediate_size"], max_seq_len=hf["max_position_embeddings"],
                dropout=0.0, activation=hf["hidden_act"], causal=hf["is_causal"], layer_norm_eps=hf["layer_norm_eps"])


def bundle_state(bundle):
    index = os.path.join(bundle, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    tensors, metadata = {}, {}
    for f in files:
        tensors.update(load_file(os.path.join(bundle, f)))
        with safe_open(os.path.join(bundle, f), "pt") as h:
            metadata.update(h.metadata() or {})
    return tensors, metadata


def normalise(key):
    changed = True
    while changed:
        changed = False
        for w in WRAPPERS:
            if key.startswith(w):
                key, changed = key[len(w):], True
    return ".".join(p for p in key.split(".") if p not in ("_fsdp_wrapped_module", "_checkpoint_wrapped_module"))


def main():
    bundle, source_path = sys.argv[1], sys.argv[2]
    exact = "--exact" in sys.argv
    problems = []
    hf = json.load(open(os.path.join(bundle, "config.json")))
    config = training_config(hf)
    tensors, metadata = bundle_state(bundle)
    assert all(k.startswith("model.") for k in tensors), "release names start with model."
    release = ARBaseline(**config).eval()
    missing, unexpected = release.load_state_dict({k[len("model."):]: v.float() for k, v in tensors.items()}, strict=False)
    if hf["tie_word_embeddings"]:
        if missing != ["lm_head.weight"] or unexpected:
            problems.append(f"tied bundle: missing {missing}, unexpected {unexpected}")
        if metadata.get("model.lm_head.weight") != "model.token_embedding.weight":
            problems.append("__metadata__ lacks the tie alias")
        if release.lm_head.weight.data_ptr() != release.token_embedding.weight.data_ptr():
            problems.append("ARBaseline lost its tie")
    elif missing or unexpected:
        problems.append(f"untied bundle: missing {missing}, unexpected {unexpected}")

    source_sd = {normalise(k): v for k, v in state_dict(torch.load(source_path, weights_only=True)).items()}
    source = ARBaseline(**config).eval()
    if hf["tie_word_embeddings"]:
        source_sd.pop("lm_head.weight", None)
        source.load_state_dict({k: v.float() for k, v in source_sd.items()}, strict=False)
    else:
        source.load_state_dict({k: v.float() for k, v in source_sd.items()}, strict=True)
    ids = torch.Generator().manual_seed(0)
    probe = torch.randint(0, config["vocab_size"], (3, config["max_seq_len"]), generator=ids)
    with torch.no_grad():
        a, b = source(probe), release(probe)
    diff = (a - b).abs().max().item()
    if exact and not torch.equal(a, b):
        problems.append(f"logits differ (max |diff| {diff})")
    print(f"logits: max |source - bundle| = {diff} over {tuple(a.shape)}")

    tok_path = os.path.join(bundle, "tokenizer.json")
    if os.path.exists(tok_path):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(tok_path)
        for role in ("bos", "eos", "pad", "mask"):
            special = json.load(open(os.path.join(bundle, "special_tokens_map.json"))).get(f"{role}_token")
            if special is not None and tok.token_to_id(special if isinstance(special, str) else special["content"]) != hf[f"{role}_token_id"]:
                problems.append(f"tokenizer {role} id differs from config.json")
        enc = tok.encode("اللغة العربية")
        if not enc.ids or max(enc.ids) >= hf["vocab_size"]:
            problems.append("tokenizer output outside the vocabulary")
        print(f"tokenizer: {tok.get_vocab_size()} tokens, 'اللغة العربية' -> {enc.ids}")
    for p in problems:
        print("FAIL", p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
