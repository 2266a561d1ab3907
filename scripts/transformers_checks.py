"""What the transformers interop scripts (interop_gpt2.py, interop_transformers.py) share: the dtype names,
a greedy loop over a reference model, the printed check list, and running a model card's quick-start code."""
import math
import os
import re
import shutil
import subprocess
import tempfile
import sys

import torch
from transformers import GenerationConfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Fixtures"))
from arafusion import ARBaseline  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def reference(source_path, dtype, state_dict=None):
    """ARBaseline in float32 on the source's weights rounded to `dtype` (what a cast bundle holds), or on
    `state_dict` (training names, the LM head left to the tie) when given; and the source's training config."""
    ck = torch.load(source_path, weights_only=True)
    model = ARBaseline(**ck["config"]).eval()
    sd = {k: v.to(dtype).float() for k, v in ck["model"].items()} if state_dict is None else dict(state_dict)
    sd.setdefault("lm_head.weight", sd["token_embedding.weight"])
    model.load_state_dict(sd)
    return model, ck["config"]


def greedy(model, ids, steps, eos):
    """Appends the argmax token `steps` times, stopping after `eos` as generate does."""
    out = ids
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(out)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if nxt.item() == eos:
                break
    return out


def generation(check, model, ref, prompt, hf, bundle, positions):
    """generate() as users call it, on the float32 `model` loaded from `bundle`: greedy equals a greedy loop over the
    reference `ref`, the bundle's generation_config.json samples (top p 0.9), and a plain generate(ids) stops within
    the positions. Returns the greedy loop's ids."""
    steps = positions - prompt.shape[1]
    mine = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=steps)
    theirs = greedy(ref, prompt, steps, hf["eos_token_id"])
    check(torch.equal(mine, theirs), f"greedy generate ({mine.shape[1] - prompt.shape[1]} of at most {steps} tokens) "
                                     "equals a greedy loop over ARBaseline")
    config = GenerationConfig.from_pretrained(bundle)
    torch.manual_seed(0)
    sampled = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config, max_new_tokens=4)
    check(config.do_sample and config.top_p == 0.9 and sampled.shape[1] <= prompt.shape[1] + 4,
          f"top-p sampling (temperature {config.temperature}, top_p {config.top_p}) runs: {sampled[0].tolist()}")
    plain = model.generate(prompt, attention_mask=torch.ones_like(prompt))
    check(config.max_length <= positions and plain.shape[1] <= positions,
          f"plain generate(ids) stops within the {positions} positions ({plain.shape[1]} tokens)")
    return theirs


class Checks:
    """Each check printed as `ok    what` or `FAIL  what`; `finish` prints the verdict and exits 1 on a failure."""

    def __init__(self):
        self.problems = []

    def __call__(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.problems.append(what)

    def finish(self):
        print("ok" if not self.problems else f"{len(self.problems)} problem(s)")
        sys.exit(1 if self.problems else 0)


def card_quick_start(bundle, check, reference_model=None):
    """Runs every ```python block of the bundle's README.md as written, each in a fresh process, from a folder where
    the bundle stands under the name the card loads it by (`from_pretrained("./NAME", ...)`: the release's name, not
    the folder's). With `reference_model` (ARBaseline in float32 on the bundle's weights), the perplexity the card
    prints must equal the reference's on the same ids within 1e-4 relative."""
    card = open(os.path.join(bundle, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", card, re.S)
    check(len(blocks) >= 1, "model card has quick-start code")
    names = set(re.findall(r'from_pretrained\("\./([^"/]+)"', card))
    check(len(names) == 1, f"the card's code loads the release's folder by one name: {sorted(names)}")
    if not blocks or len(names) != 1:
        return card
    where = tempfile.mkdtemp()
    os.symlink(os.path.abspath(bundle), os.path.join(where, names.pop()))
    for code in blocks:
        kind = "perplexity" if "def perplexity" in code else "batch inference" if "padding=True" in code else "quick start"
        run = subprocess.run([sys.executable, "-c", code], cwd=where, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        check(run.returncode == 0 and run.stdout.strip() != "",
              f"card code block ({len(code.splitlines())} lines, {kind}) runs as written "
              f"(exit {run.returncode}): {run.stdout.strip()[-200:]} {run.stderr[-600:] if run.returncode else ''}")
        if "def perplexity" in code and run.returncode == 0 and reference_model is not None:
            printed = float(re.search(r"perplexity: (\S+)", run.stdout).group(1))
            text = re.search(r"perplexity\('(.*?)'\)", code).group(1)
            positions = reference_model.position_embedding.num_embeddings  # the card truncates to the model's positions
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(bundle, subfolder="base_tokenizer")
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=positions).input_ids
            with torch.no_grad():
                logits = reference_model(ids)
                loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
            want = math.exp(loss.item())
            check(abs(printed - want) <= 1e-4 * want,
                  f"the card's perplexity {printed:.6g} equals the training module's {want:.6g} within 1e-4 relative ({ids.shape[1]} tokens)")
    shutil.rmtree(where)
    return card
