"""The AraFusion training module, written from docs/model-family.md. Used by the fixture
generators and the interop scripts (never by arapack itself)."""
import torch
import torch.nn as nn

TINY = dict(vocab_size=128, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=16,
            dropout=0.1, activation="gelu", causal=True, layer_norm_eps=1e-5)  # the dropout the real runs train with


class ARBaseline(nn.Module):
    def __init__(self, vocab_size, d_model, n_layers, n_heads, d_ff, max_seq_len, dropout=0.0,
                 activation="gelu", causal=True, layer_norm_eps=1e-5):
        super().__init__()
        self.causal = causal
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_seq_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation, batch_first=True,
                                           norm_first=True, layer_norm_eps=layer_norm_eps)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight

    def forward(self, ids):
        length = ids.shape[-1]
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(length, device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length) if self.causal else None
        x = self.transformer(x, mask=mask, is_causal=self.causal)
        return self.lm_head(self.ln_f(x))


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = {**TINY, **overrides}
    model = ARBaseline(**config)
    with torch.no_grad():  # non-trivial biases and norms so every tensor matters
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "norm" in name or "ln_f.weight" in name else 0.0))
    return model, config
