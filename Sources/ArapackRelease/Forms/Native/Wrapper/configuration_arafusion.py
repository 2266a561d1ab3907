# Written by arapack into every AraFusion release bundle, byte for byte the same; do not edit:
# `arapack verify` reports a changed copy. Only transformers is imported.
"""transformers configurations of the AraFusion family: `arafusion_ar` (causal) and `arafusion_mdlm`
(bidirectional, masked diffusion). The sizes come from the bundle's config.json; there are no defaults
to fall back on, so a config that lacks one is refused when the model is built."""
from transformers import PretrainedConfig

SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings")


class _AraFusionConfig(PretrainedConfig):
    """The fields of the family's config.json (arapack's docs/model-family.md); `is_causal` is fixed by the subclass."""

    causal = True

    def __init__(self, vocab_size=None, hidden_size=None, num_hidden_layers=None, num_attention_heads=None,
                 intermediate_size=None, max_position_embeddings=None, hidden_act="gelu", layer_norm_eps=1e-5,
                 dropout=0.0, is_causal=None, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
                 pad_token_id=None, mask_token_id=None, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.dropout = dropout
        self.is_causal = self.causal if is_causal is None else is_causal
        self.mask_token_id = mask_token_id
        super().__init__(tie_word_embeddings=tie_word_embeddings, bos_token_id=bos_token_id,
                         eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)

    def check(self):
        """Raises ValueError naming the field when the config cannot describe an AraFusion model."""
        for name in SIZE_FIELDS:
            value = getattr(self, name, None)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"config.json: {name} must be a positive integer, found {value!r}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(f"config.json: num_attention_heads {self.num_attention_heads} does not divide "
                             f"hidden_size {self.hidden_size}")
        if self.hidden_act not in ("gelu", "relu"):
            raise ValueError(f"config.json: hidden_act must be \"gelu\" or \"relu\", found {self.hidden_act!r}")
        if bool(self.is_causal) != self.causal:
            raise ValueError(f"config.json: is_causal is {self.is_causal!r} but model_type {self.model_type} is "
                             f"{'causal' if self.causal else 'bidirectional'}")


class AraFusionARConfig(_AraFusionConfig):
    model_type = "arafusion_ar"
    causal = True


class AraFusionMDLMConfig(_AraFusionConfig):
    model_type = "arafusion_mdlm"
    causal = False
