"""Tensor names and shapes of the AraFusion family (docs/model-family.md), shared by the benchmark generators."""

FULL = dict(vocab_size=76800, d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_seq_len=512)


def training_shapes(vocab_size, d_model, n_layers, d_ff, max_seq_len, **_):
    """Training state-dict keys and shapes, lm_head included (tied to token_embedding)."""
    d, f = d_model, d_ff
    shapes = {"token_embedding.weight": (vocab_size, d), "position_embedding.weight": (max_seq_len, d)}
    for i in range(n_layers):
        p = f"transformer.layers.{i}."
        shapes.update({
            p + "self_attn.in_proj_weight": (3 * d, d), p + "self_attn.in_proj_bias": (3 * d,),
            p + "self_attn.out_proj.weight": (d, d), p + "self_attn.out_proj.bias": (d,),
            p + "linear1.weight": (f, d), p + "linear1.bias": (f,),
            p + "linear2.weight": (d, f), p + "linear2.bias": (d,),
            p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "norm2.weight": (d,), p + "norm2.bias": (d,),
        })
    shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,), "lm_head.weight": (vocab_size, d)})
    return shapes


def release_shapes(**config):
    """Release names (`model.` + training name) with the tied head stored once."""
    return {"model." + k: v for k, v in training_shapes(**config).items() if k != "lm_head.weight"}
