#!/usr/bin/env python3
"""Interop check for `arapack convert --to gpt2`: the bundle loads in stock transformers with no remote code
as GPT2LMHeadModel, with no missing, unexpected or mismatched keys, and computes the source checkpoint's
ARBaseline (docs/model-family.md, written independently in Fixtures/arafusion.py).

    python scripts/interop_gpt2.py BUNDLE SOURCE.pt [--card]

SOURCE.pt is the training checkpoint the bundle was made from ({"model": state_dict, "config": {...}}).
Checks, each printed; exits 1 on any failure:
- the model loads with `torch_dtype="auto"` in the dtype config.json states;
- logits: float32 bundles within 1e-4 of ARBaseline on the source; bf16/f16 bundles, upcast to float32,
  within 1e-4 of ARBaseline on the source's weights rounded to that dtype (the bundle holds exactly those);
- greedy `generate` (GPT-2's KV cache) equals a greedy loop over ARBaseline, to the last position;
- top-p sampling with the bundle's generation_config runs, and a plain `generate(ids)` stops within the positions;
- with a tokenizer in the bundle, AutoTokenizer loads it with the config's special ids;
- with --card, the model card's quick-start code (its first ```python block) runs as written from the folder
  that holds the bundle.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformers_checks import DTYPES, Checks, card_quick_start, generation, reference  # noqa: E402


def main():
    bundle, source_path = sys.argv[1], sys.argv[2]
    check = Checks()

    hf = json.load(open(os.path.join(bundle, "config.json")))
    model, info = AutoModelForCausalLM.from_pretrained(bundle, torch_dtype="auto", output_loading_info=True)
    model.eval()
    dtype = DTYPES[hf["torch_dtype"]]
    check(type(model).__name__ == "GPT2LMHeadModel", f"loads as {type(model).__name__} without remote code")
    check(not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), f"loading info {info}")
    check(model.dtype == dtype, f"torch_dtype auto gives {model.dtype} (config.json says {hf['torch_dtype']})")
    check(model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "the LM head is the embedding (tied)")

    ref, config = reference(source_path, dtype)
    positions = config["max_seq_len"]
    gen = torch.Generator().manual_seed(0)
    probe = torch.randint(0, config["vocab_size"], (3, positions), generator=gen)
    model32 = model.float()
    with torch.no_grad():
        a, b = ref(probe), model32(probe).logits
    diff = (a - b).abs().max().item()
    check(diff <= 1e-4, f"logits: max |ARBaseline - GPT2LMHeadModel| = {diff:.3g} over {tuple(a.shape)} (limit 1e-4)")

    generation(check, model32, ref, probe[:1, :3], hf, bundle, positions)

    if os.path.exists(os.path.join(bundle, "tokenizer.json")):
        tok = AutoTokenizer.from_pretrained(bundle)
        ids = {r: tok.convert_tokens_to_ids(getattr(tok, f"{r}_token")) for r in ("bos", "eos", "pad")}
        check(all(ids[r] == hf[f"{r}_token_id"] for r in ids), f"AutoTokenizer loads, special ids {ids}")

    if "--card" in sys.argv:
        card = card_quick_start(bundle, check)
        front = card.split("---\n")[1]
        check("library_name: transformers" in front and "custom_code" not in card.split("## ")[0],
              "model card front matter: transformers, no custom_code")

    check.finish()


if __name__ == "__main__":
    main()
