#!/usr/bin/env python3
"""Generates the release (convert / verify) fixtures with real PyTorch (versions in ../requirements.txt).

    python Fixtures/release/generate.py

valid/: training checkpoints of twins the other fixtures do not cover:
  mdlm_relu.pt      bidirectional (causal False), ReLU, odd sizes (3 layers, d 48, 6 heads, FFN 80, vocab 96);
  untied.pt         a real untied model: lm_head a separate parameter with its own values.
hostile/: checkpoints `convert` must refuse; hostile.json maps each to the message fragment arapack prints.
"""
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from arafusion import tiny_model  # noqa: E402
from fixturelib import fresh_dirs, write_json  # noqa: E402

VALID = os.path.join(HERE, "valid")
HOSTILE = os.path.join(HERE, "hostile")


def training_dict(model, config, step):
    return {"model": model.state_dict(), "config": config, "step": step, "train_loss": 2.5, "tokens_seen": 4096}


def main():
    fresh_dirs(VALID, HOSTILE)
    model, config = tiny_model(seed=3, vocab_size=96, d_model=48, n_layers=3, n_heads=6, d_ff=80, max_seq_len=12,
                               activation="relu", causal=False)
    torch.save(training_dict(model, config, 7), os.path.join(VALID, "mdlm_relu.pt"))

    model, config = tiny_model(seed=4)
    model.lm_head.weight = nn.Parameter(model.token_embedding.weight.detach().clone())
    with torch.no_grad():
        model.lm_head.weight[3, 5] += 0.25
    torch.save(training_dict(model, config, 9), os.path.join(VALID, "untied.pt"))

    hostile = {}

    def case(name, obj, fragment):
        torch.save(obj, os.path.join(HOSTILE, name))
        hostile[name] = fragment

    model, config = tiny_model(seed=5)
    case("config_more_layers.pt", training_dict(model, {**config, "n_layers": 3}, 1), "num_hidden_layers is 2 in the tensor shapes but 3 in")
    sd = model.state_dict()
    del sd["transformer.layers.1.linear2.bias"]
    case("missing_tensor.pt", {"model": sd, "config": config}, "transformer.layers.1.linear2.bias")
    sd = model.state_dict()
    sd["transformer.layers.0.extra.weight"] = torch.zeros(3)
    case("unexpected_tensor.pt", {"model": sd, "config": config}, "transformer.layers.0.extra.weight")
    sd = dict(model.state_dict())
    sd["ln_f.bias"] = torch.zeros(31)
    case("misshapen_tensor.pt", {"model": sd, "config": config}, "ln_f.bias\" has shape [31]")
    case("heads_not_dividing.pt", training_dict(model, {**config, "n_heads": 5}, 1), "not divisible")
    sd = model.state_dict()
    sd["transformer.layers.0.norm1.weight"] = torch.ones(32, dtype=torch.int64)
    case("integer_weight.pt", {"model": sd, "config": config}, "must be floating point")
    case("not_a_model.pt", {"model": {"w": torch.zeros(2, 2)}}, "not an AraFusion model")
    write_json(os.path.join(HERE, "hostile.json"), hostile)


if __name__ == "__main__":
    main()
