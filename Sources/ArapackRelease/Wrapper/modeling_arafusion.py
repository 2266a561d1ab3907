# Written by arapack into every AraFusion release bundle, byte for byte the same; do not edit:
# `arapack verify` reports a changed copy. Only torch and transformers are imported.
"""transformers models of the AraFusion family.

`ARAr381MForCausalLM` (causal LM) and `MDLMForMaskedDiffusion` (masked diffusion, bidirectional) hold the
training module, `AraFusionTransformer` (ARCHITECTURE.md's ARBaseline), as `self.model`: a bundle's tensor
names are `model.` + the training names, and the LM head is tied to the token embedding (stored once).
"""
import torch
import torch.nn as nn
import transformers
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput, MaskedLMOutput

from .configuration_arafusion import AraFusionARConfig, AraFusionMDLMConfig

# transformers 5 names the tie {target: source}; transformers 4 lists the targets and ties the output
# embeddings to the input embeddings.
_TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
_TIED = {"model.lm_head.weight": "model.token_embedding.weight"} if _TRANSFORMERS_5 else ["model.lm_head.weight"]


class AraFusionTransformer(nn.Module):
    """The training module: token and learned position embeddings, pre-LayerNorm encoder layers (causal or
    bidirectional), a final LayerNorm and the tied LM head. The same operations in the same order as the
    training code, so float32 logits are bit-identical to it."""

    def __init__(self, config):
        super().__init__()
        config.check()
        self.causal = bool(config.is_causal)
        self.max_positions = config.max_position_embeddings
        d = config.hidden_size
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, d)
        layer = nn.TransformerEncoderLayer(d, config.num_attention_heads, config.intermediate_size, config.dropout,
                                           config.hidden_act, batch_first=True, norm_first=True,
                                           layer_norm_eps=config.layer_norm_eps)
        self.transformer = nn.TransformerEncoder(layer, config.num_hidden_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight

    def forward(self, ids):
        length = ids.shape[-1]
        if length > self.max_positions:
            raise ValueError(f"{length} tokens is more than this model's {self.max_positions} positions "
                             "(max_position_embeddings); shorten the input")
        if length == 0:
            raise ValueError("the input has no tokens")
        x = self.token_embedding(ids) + self.position_embedding(torch.arange(length, device=ids.device))
        mask = (nn.Transformer.generate_square_subsequent_mask(length, device=ids.device, dtype=x.dtype)
                if self.causal else None)
        x = self.transformer(x, mask=mask, is_causal=self.causal)
        return self.lm_head(self.ln_f(x))

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens=100, temperature=0.8, top_p=0.9, eos_token_id=None, generator=None):
        """Samples up to `max_new_tokens` tokens after `prompt_ids` ([batch, length] or [length]) with
        temperature and nucleus (top-p) sampling; temperature 0 is greedy. Stops when every sequence has
        produced `eos_token_id`, or at the model's positions. Returns the prompt and the new tokens."""
        if not self.causal:
            raise ValueError("generate samples left to right: it needs the causal (AR) model")
        ids = prompt_ids if prompt_ids.dim() == 2 else prompt_ids.unsqueeze(0)
        if ids.shape[1] >= self.max_positions:
            raise ValueError(f"the prompt fills the model's {self.max_positions} positions; nothing can follow it")
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(min(max_new_tokens, self.max_positions - ids.shape[1])):
            logits = self(ids)[:, -1].float()
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                if top_p < 1.0:
                    sorted_probs, order = probs.sort(dim=-1, descending=True)
                    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
                    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
                    probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            ids = torch.cat([ids, nxt.unsqueeze(-1)], dim=1)
            if eos_token_id is not None and bool(done.all()):
                break
        return ids if prompt_ids.dim() == 2 else ids.squeeze(0)


class _AraFusionPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    _tied_weights_keys = _TIED
    _no_split_modules = ["TransformerEncoderLayer"]
    supports_gradient_checkpointing = False

    def __init__(self, config):
        super().__init__(config)
        self.model = AraFusionTransformer(config)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            nn.init.normal_(module.in_proj_weight, std=0.02)
            nn.init.zeros_(module.in_proj_bias)

    def get_input_embeddings(self):
        return self.model.token_embedding

    def set_input_embeddings(self, value):
        self.model.token_embedding = value

    def get_output_embeddings(self):
        return self.model.lm_head

    def set_output_embeddings(self, value):
        self.model.lm_head = value

    @staticmethod
    def _ids(input_ids, attention_mask, causal):
        if input_ids is None:
            raise ValueError("input_ids is required (this model has no inputs_embeds path)")
        if attention_mask is not None and not bool(attention_mask.all()):
            # Padding is not masked inside the model: right padding cannot reach earlier positions of a
            # causal model, anything else would change the result silently.
            trailing = bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all()) if causal else False
            if not trailing:
                raise ValueError("attention_mask has padding this model does not mask (left padding, or any padding "
                                 "in the bidirectional model): pass sequences without padding, or pad on the right")
        return input_ids


class ARAr381MForCausalLM(_AraFusionPreTrainedModel, GenerationMixin):
    """The AR model: `forward` returns next-token logits (and the mean cross-entropy of the shifted labels
    when `labels` are given); `generate` is transformers' (no key/value cache: each step runs the whole
    sequence); `self.model.generate(...)` is the training code's sampler."""

    config_class = AraFusionARConfig

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        ids = self._ids(input_ids, attention_mask, causal=True)
        logits = self.model(ids)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                               labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _supports_default_dynamic_cache(self=None):
        return False


class MDLMForMaskedDiffusion(_AraFusionPreTrainedModel):
    """The MDLM model: bidirectional attention; `forward` returns logits at every position (and the mean
    cross-entropy over the positions whose label is not -100 when `labels` are given)."""

    config_class = AraFusionMDLMConfig

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **kwargs):
        ids = self._ids(input_ids, attention_mask, causal=False)
        logits = self.model(ids)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                               ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)
