#!/usr/bin/env python3
"""Interop check for native release bundles in transformers, loaded as the model card says: with
`trust_remote_code=True`, through the wrapper arapack writes into the bundle (configuration_arafusion.py,
modeling_arafusion.py) and config.json's auto_map.

    python scripts/interop_transformers.py BUNDLE SOURCE.pt [--card] [--golden-out FILE]

SOURCE.pt is the training checkpoint the bundle was made from ({"model": state_dict, "config": {...}}).
Checks, each printed; exits 1 on any failure:
- AR bundles load with AutoModelForCausalLM as ARAr381MForCausalLM, MDLM bundles with AutoModel and
  AutoModelForMaskedLM as MDLMForMaskedDiffusion; no missing, unexpected or mismatched keys; `torch_dtype="auto"`
  gives the dtype config.json states; the LM head is the embedding (tied);
- logits, computed in float32: f32 bundles bit-identical to ARBaseline (Fixtures/arafusion.py) on the source;
  bf16/f16 bundles bit-identical to ARBaseline on the source's weights cast the same way; int8 and int4 bundles
  (loaded through compressed-tensors with no quantization arguments) within 1e-4 of ARBaseline on the bundle's weights
  dequantized here (q * scale), and --golden-out writes their ids and logits for `arapack verify --golden`;
- AR: greedy `generate` equals a greedy loop over the reference; top-p sampling with the bundle's
  generation_config runs; a plain `generate(ids)` stops within the positions; `pipeline("text-generation")`
  runs; the training sampler `model.model.generate(...)` runs and stays within the positions; labels give the
  shifted cross-entropy; more tokens than positions is a ValueError naming them;
- a key/value cache (transformers' DynamicCache, used by generate by default): cached step logits within 1e-5
  of the logit scale of the uncached forward, greedy generate with and without the cache equal to the greedy loop, logits_to_keep;
  padding: a batch of prompts of different lengths, left-padded, generates greedily each row's tokens alone (AR),
  and each row's logits, left- or right-padded, are within 1e-5 of the logit scale of the row alone (AR and MDLM); a padded batch
  wider than the positions is a ValueError;
- with a tokenizer, AutoTokenizer loads it from the bundle and from subfolder="base_tokenizer" without asking about
  remote code (but for transformers 5 on the top folder, which reads config.json first and asks), with the config's
  special ids;
- with --card, the model card's front matter (yaml) and its quick-start code, run as written from the folder
  that holds the bundle.
"""
import contextlib
import io
import json
import os
import sys

import torch
import transformers
from safetensors import safe_open
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, pipeline)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from transformers_checks import DTYPES, Checks, card_quick_start, generation, greedy, reference  # noqa: E402

def bundle_tensors(bundle):
    """Every tensor of the bundle's safetensors files, quantized weights dequantized (q * scale, per row or group):
    int8's `X` I8 with `X_scale`, int4's `X_packed` I32 (8 values a word, value + 8 in 4 bits, the first lowest) with
    `X_scale` and `X_shape`."""
    raw = {}
    for name in sorted(os.listdir(bundle)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(bundle, name), "pt") as f:
                raw.update({k: f.get_tensor(k) for k in f.keys()})
    out = {}
    for k, v in raw.items():
        if k.endswith(("_scale", "_shape")):
            continue
        if k.endswith("_packed"):
            k = k[:-len("_packed")]
            shifts = torch.arange(0, 32, 4, dtype=torch.int32)
            v = (((v.unsqueeze(-1) >> shifts) & 0xF) - 8).reshape(v.shape[0], -1).to(torch.int8)
            assert list(v.shape) == raw[k + "_shape"].tolist(), (k, v.shape, raw[k + "_shape"])
        if v.dtype == torch.int8:
            s = raw[k + "_scale"]
            out[k] = (v.float().view(v.shape[0], s.shape[1], -1) * s.unsqueeze(-1)).view(v.shape)
        else:
            out[k] = v.float()
    return out


def bundle_reference(source_path, hf, bundle):
    """ARBaseline in float32 on what the bundle should hold: the source cast to the bundle's dtype, or for int8 and
    int4 the bundle's own weights dequantized."""
    if "quantization_config" in hf:
        return reference(source_path, torch.float32, {k[len("model."):]: v for k, v in bundle_tensors(bundle).items()})
    return reference(source_path, DTYPES[hf["torch_dtype"]])


# transformers 5 calls the key/value cache `cache`, 4.x `past_key_values`.
CACHE = "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"


def padded(rows, pad, left):
    """`rows` (1-D id tensors) padded with `pad` to one width, on the left or the right, and the attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span], mask[i, span] = r, 1
    return ids, mask


def cache_and_padding(model, ref, probe, hf, causal, check):
    """The key/value cache and padded batches against the uncached forward and each row alone."""
    positions = probe.shape[1]
    pad, eos = hf["pad_token_id"], hf["eos_token_id"]
    rows = [probe[0, :3], probe[1, : positions // 2], probe[2, :5]]
    with torch.no_grad():
        if causal:
            full = model(probe).logits
            # Float32 logits carry a rounding error of about 1e-6 of their scale whichever way they are computed
            # (docs/model-family.md), so two ways agree to a bound on that scale: 1e-5 · max(1, max |logit|).
            bound = 1e-5 * max(1.0, full.abs().max().item())
            out = model(probe[:, :4], use_cache=True)
            worst = (out.logits - full[:, :4]).abs().max().item()
            cache = getattr(out, CACHE)
            for t in range(4, positions):
                out = model(probe[:, t:t + 1], use_cache=True, **{CACHE: cache})
                cache = getattr(out, CACHE)
                worst = max(worst, (out.logits[:, 0] - full[:, t]).abs().max().item())
            check(worst <= bound and cache.get_seq_length() == positions,
                  f"cached logits, one token a step, within {bound:.3g} of the uncached forward (max |diff| {worst:.3g})")
            kept = model(probe, logits_to_keep=1).logits
            check(kept.shape[1] == 1 and torch.equal(kept[:, 0], full[:, -1]), "logits_to_keep=1 gives the last position's logits")
            generated = model.generate(probe[:1, :3], attention_mask=torch.ones_like(probe[:1, :3]), do_sample=False,
                                       max_new_tokens=positions - 3, return_dict_in_generate=True)
            used = getattr(generated, CACHE)
            check(used is not None and used.get_seq_length() == generated.sequences.shape[1] - 1,
                  f"generate uses a key/value cache by default ({type(used).__name__} of {used.get_seq_length() if used else 0} positions)")
            uncached = model.generate(probe[:1, :3], attention_mask=torch.ones_like(probe[:1, :3]), do_sample=False,
                                      max_new_tokens=positions - 3, use_cache=False)
            check(torch.equal(uncached, generated.sequences), "generate with use_cache=False gives the cached tokens")
            ids, mask = padded(rows, pad, left=True)
            steps = positions - ids.shape[1]
            batch = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=steps, pad_token_id=pad)
            same = True
            for i, r in enumerate(rows):
                alone = greedy(ref, r.unsqueeze(0), steps, eos)[0, len(r):]
                mine = batch[i, ids.shape[1]:][: len(alone)]
                same &= torch.equal(mine, alone)
            check(same, f"a left-padded batch of prompts ({[len(r) for r in rows]} tokens) generates each row's greedy tokens alone")
        for left in (True, False):
            ids, mask = padded(rows, pad, left)
            logits = model(ids, attention_mask=mask).logits
            bound = 1e-5 * max(1.0, logits.abs().max().item())
            worst = 0.0
            for i, r in enumerate(rows):
                alone = model(r.unsqueeze(0)).logits[0]
                mine = logits[i, ids.shape[1] - len(r):] if left else logits[i, : len(r)]
                worst = max(worst, (mine - alone).abs().max().item())
            check(worst <= bound, f"{'left' if left else 'right'}-padded batch: each row's logits within {bound:.3g} of the row "
                                  f"alone (max |diff| {worst:.3g})")
        wide = torch.cat([torch.full((1, 1), pad), probe[:1]], dim=1)
        try:
            model(wide, attention_mask=torch.cat([torch.zeros(1, 1, dtype=torch.long), torch.ones_like(probe[:1])], dim=1))
            check(False, "a padded batch wider than the positions is refused")
        except ValueError as e:
            check(str(positions) in str(e), f"a padded batch wider than the positions is a ValueError: {e}")


def main():
    bundle, source_path = sys.argv[1], sys.argv[2]
    check = Checks()

    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    hf = json.load(open(os.path.join(bundle, "config.json")))
    causal = hf["model_type"] == "arafusion_ar"
    quantized = {"int-quantized": "int8", "pack-quantized": "int4"}.get(hf.get("quantization_config", {}).get("format"))
    classes = [AutoModelForCausalLM] if causal else [AutoModel, AutoModelForMaskedLM]
    expected_class = "ARAr381MForCausalLM" if causal else "MDLMForMaskedDiffusion"
    for auto in classes:
        model, info = auto.from_pretrained(bundle, trust_remote_code=True, torch_dtype="auto", output_loading_info=True)
        model.eval()
        check(type(model).__name__ == expected_class, f"{auto.__name__} loads {type(model).__name__}")
    check(not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), f"loading info {info}")
    dtype = DTYPES[hf["torch_dtype"]]
    check(model.dtype == dtype, f"torch_dtype auto gives {model.dtype} (config.json says {hf['torch_dtype']})")
    inner = model.model
    check(inner.lm_head.weight is inner.token_embedding.weight or
          inner.lm_head.weight.data_ptr() == inner.token_embedding.weight.data_ptr(), "the LM head is the embedding (tied)")

    ref, config = bundle_reference(source_path, hf, bundle)
    positions = config["max_seq_len"]
    gen = torch.Generator().manual_seed(0)
    probe = torch.randint(0, config["vocab_size"], (3, positions), generator=gen)
    probe[probe == hf["pad_token_id"]] = hf["bos_token_id"]
    model32 = model if model.dtype == torch.float32 else model.float()
    with torch.no_grad():
        a, b = ref(probe), model32(probe).logits
    diff = (a - b).abs().max().item()
    if quantized:
        check(diff <= 1e-4, f"{quantized} logits: max |ARBaseline(dequantized) - {expected_class}| = {diff:.3g} (limit 1e-4)")
    else:
        check(torch.equal(a, b), f"logits bit-identical to ARBaseline on the source as {hf['torch_dtype']} "
                                 f"(max |diff| {diff:.3g} over {tuple(a.shape)})")
    if "--golden-out" in sys.argv:
        from safetensors.torch import save_file
        save_file({"ids": probe.to(torch.int64).contiguous(), "logits": b.float().contiguous()},
                  sys.argv[sys.argv.index("--golden-out") + 1], metadata={"model": f"transformers {transformers.__version__}"})

    try:
        with torch.no_grad():
            model32(torch.ones(1, positions + 1, dtype=torch.long))
        check(False, "more tokens than positions is refused")
    except ValueError as e:
        check(str(positions) in str(e), f"more tokens than positions is a ValueError: {e}")

    with torch.no_grad():
        out = model32(probe[:1], labels=probe[:1])
    if causal:
        want = torch.nn.functional.cross_entropy(out.logits[0, :-1], probe[0, 1:])
    else:
        want = torch.nn.functional.cross_entropy(out.logits[0], probe[0])
    check(out.loss is not None and abs(out.loss.item() - want.item()) < 1e-5, f"labels give the cross-entropy {want.item():.4f}")

    if causal:
        prompt = probe[:1, :3]
        theirs = generation(check, model32, ref, prompt, hf, bundle, positions)
        own = inner.generate(prompt, max_new_tokens=2 * positions, temperature=0.8, top_p=0.9, eos_token_id=hf["eos_token_id"])
        check(own.shape[1] <= positions and torch.equal(own[:, :3], prompt),
              f"model.model.generate samples within the positions ({own.shape[1]} tokens)")
        own_greedy = inner.generate(prompt, max_new_tokens=positions - prompt.shape[1], temperature=0, eos_token_id=hf["eos_token_id"])
        check(torch.equal(own_greedy, theirs), "model.model.generate with temperature 0 is the greedy loop")

    cache_and_padding(model32, ref, probe, hf, causal, check)

    tokenizer_files = os.path.exists(os.path.join(bundle, "tokenizer.json"))
    if tokenizer_files:
        # Each load must not stop to ask about remote code: the prompt goes to stdout through input(), which meets an
        # empty stdin here, so its text is what shows that it asked. transformers 5 reads config.json (whose auto_map
        # names the wrapper) before the tokenizer of the top folder and always asks there; the card and the README
        # load the tokenizer from subfolder="base_tokenizer", which no version asks about.
        major = int(transformers.__version__.split(".")[0])
        for kwargs in ({}, {"subfolder": "base_tokenizer"}, {"trust_remote_code": False}):
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                tok = AutoTokenizer.from_pretrained(bundle, **kwargs)
            ids = {r: tok.convert_tokens_to_ids(getattr(tok, f"{r}_token")) for r in ("bos", "eos", "pad")}
            check(all(ids[r] == hf[f"{r}_token_id"] for r in ids), f"AutoTokenizer.from_pretrained(bundle, {kwargs}) loads, special ids {ids}")
            asked = "Do you wish to run the custom code" in said.getvalue()
            expected = major >= 5 and kwargs == {}
            check(asked == expected, f"AutoTokenizer.from_pretrained(bundle, {kwargs}) {'asks' if expected else 'does not ask'} about remote code")
        if causal:
            generator = pipeline("text-generation", model=model32, tokenizer=tok)
            text = generator("بسم الله", max_new_tokens=4, do_sample=False)
            check(isinstance(text[0]["generated_text"], str), f"pipeline(\"text-generation\") runs: {text[0]['generated_text']!r}")

    if "--card" in sys.argv:
        import yaml
        # The card's perplexity against the training module where the bundle computes in float32.
        card = card_quick_start(bundle, check, ref if hf["torch_dtype"] == "float32" and not quantized else None)
        front = yaml.safe_load(card.split("---\n")[1])
        check(front["library_name"] == "transformers" and "custom_code" in front["tags"] and front["language"] == ["ar"]
              and front["pipeline_tag"] == ("text-generation" if causal else "fill-mask") and "license" in front,
              f"model card front matter: {front}")

    check.finish()


if __name__ == "__main__":
    main()
