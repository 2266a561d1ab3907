"""Generates the tokenizer fixtures with HF `tokenizers` (versions in ../requirements.txt).

    python Fixtures/tokenizer/generate.py

valid/: a BPE tokenizer trained on a few Arabic sentences, sized for the tiny twins (vocab 128), with the
AraFusion special ids: <unk> 0, <s> 1 (bos), </s> 2 (eos), <pad> 5, <mask> 62 (reserved tokens between),
as tokenizer.json + tokenizer_config.json + special_tokens_map.json.
hostile/<case>/: copies with one thing wrong; hostile.json maps each case to the message fragment
arapack must print.
"""
import copy
import json
import os
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fixturelib import fresh_dirs, write_json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 128
TEXT = [
    "اللغة العربية من أكثر اللغات انتشارا في العالم",
    "يتعلم النموذج من النصوص العربية الكثيرة",
    "كتب الطالب الدرس في الكتاب الجديد",
    "ذهب الولد إلى المدرسة في الصباح الباكر",
    "العلم نور والجهل ظلام",
]
SPECIAL = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>"), "pad": (5, "<pad>"), "mask": (62, "<mask>")}


def special_tokens():
    by_id = {i: s for i, s in SPECIAL.values()}
    return [by_id.get(i, f"<reserved_{i}>") for i in range(max(by_id) + 1)]


def train():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=special_tokens(), limit_alphabet=40, show_progress=False)
    tok.train_from_iterator(TEXT, trainer)
    for name, (i, s) in SPECIAL.items():
        assert tok.token_to_id(s) == i, (name, s, tok.token_to_id(s))
    assert tok.get_vocab_size() <= VOCAB
    return tok


def side_files():
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 16, "clean_up_tokenization_spaces": False}
    config.update({f"{n}_token": s for n, (_, s) in SPECIAL.items()})
    config["added_tokens_decoder"] = {str(i): {"content": s, "special": True, "lstrip": False, "rstrip": False,
                                               "normalized": False, "single_word": False} for i, s in SPECIAL.values()}
    special_map = {f"{n}_token": s for n, (_, s) in SPECIAL.items()}
    return config, special_map


def write_set(folder, tokenizer_json, config, special_map):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False, indent=1)
    write_json(os.path.join(folder, "tokenizer_config.json"), config)
    write_json(os.path.join(folder, "special_tokens_map.json"), special_map)


def main():
    fresh_dirs(os.path.join(HERE, "valid"), os.path.join(HERE, "hostile"))
    tok = train()
    tj = json.loads(tok.to_str())
    config, special_map = side_files()
    write_set(os.path.join(HERE, "valid"), tj, config, special_map)
    encoded = tok.encode(TEXT[0])
    write_json(os.path.join(HERE, "valid.json"), {"vocab_size": tok.get_vocab_size(), "text": TEXT[0], "ids": encoded.ids,
                                                  "special": {n: i for n, (i, _) in SPECIAL.items()}})

    hostile = {}

    def case(name, message, tj=tj, config=config, special_map=special_map, raw=None):
        folder = os.path.join(HERE, "hostile", name)
        write_set(folder, tj, config, special_map)
        if raw is not None:
            with open(os.path.join(folder, raw[0]), "w") as f:
                f.write(raw[1])
        hostile[name] = message

    bad = copy.deepcopy(config)
    bad["eos_token"] = "<pad>"
    case("eos_disagrees", "eos", config=bad)
    bad = copy.deepcopy(tj)
    for t in bad["added_tokens"]:  # swap the ids of <s> and <reserved_3>
        if t["content"] in ("<s>", "<reserved_3>"):
            t["id"] = 4 - t["id"]
    bad["model"]["vocab"]["<s>"], bad["model"]["vocab"]["<reserved_3>"] = 3, 1
    case("bos_id_moved", "bos", tj=bad)
    bad = copy.deepcopy(tj)
    bad["model"]["vocab"]["زائد"] = VOCAB + 10
    case("vocab_too_large", "vocabulary", tj=bad)
    case("truncated_json", "tokenizer.json", raw=("tokenizer.json", json.dumps(tj)[:300]))
    bad = copy.deepcopy(special_map)
    bad["mask_token"] = "<absent>"
    case("mask_unknown", "mask", special_map=bad)
    write_json(os.path.join(HERE, "hostile.json"), hostile)


if __name__ == "__main__":
    main()
