# Written by arapack into every AraFusion release bundle, byte for byte the same; do not edit:
# `arapack verify` reports a changed copy. Only torch and transformers are imported.
"""transformers models of the AraFusion family.

`ARAr381MForCausalLM` (causal LM) and `MDLMForMaskedDiffusion` (masked diffusion, bidirectional) hold the
training module, `AraFusionTransformer` (ARBaseline in arapack's docs/model-family.md), as `self.model`: a
bundle's tensor names are `model.` + the training names, and the LM head is tied to the token embedding (stored
once).

Without padding and without a key/value cache, `forward` runs the training module itself (float32 logits
bit-identical to it). With an `attention_mask` that pads (left or right), or with a cache (`generate` and
`pipeline` use transformers' `DynamicCache` by default), the same parameters run layer by layer: padded keys
are masked, positions come from the mask (a left-padded row sees the positions it would alone), and each step
attends to the cached keys and values of the earlier ones.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers import DynamicCache, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, MaskedLMOutput

from .configuration_arafusion import AraFusionARConfig, AraFusionMDLMConfig

# transformers 5 names the tie {target: source}; transformers 4 lists the targets and ties the output
# embeddings to the input embeddings.
_TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
_TIED = {"model.lm_head.weight": "model.token_embedding.weight"} if _TRANSFORMERS_5 else ["model.lm_head.weight"]
# The key/value cache travels as `cache` in transformers 5.x (`past_key_values` there is a deprecated alias) and as
# `past_key_values` in 4.x: the output field's name says which.
_CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


class _SamplerCache:
    """Keys and values of the earlier positions, per layer, for the training code's sampler (the same calls as
    transformers' `DynamicCache`: `update` and `get_seq_length`)."""

    def __init__(self):
        self.layers = []

    def update(self, keys, values, layer):
        if layer == len(self.layers):
            self.layers.append((keys, values))
        else:
            past_keys, past_values = self.layers[layer]
            self.layers[layer] = (torch.cat([past_keys, keys], dim=-2), torch.cat([past_values, values], dim=-2))
        return self.layers[layer]

    def get_seq_length(self, layer=0):
        return self.layers[layer][0].shape[-2] if layer < len(self.layers) else 0


class AraFusionTransformer(nn.Module):
    """The training module: token and learned position embeddings, pre-LayerNorm encoder layers (causal or
    bidirectional), a final LayerNorm and the tied LM head. `forward` runs the same operations in the same order
    as the training code, so float32 logits are bit-identical to it; `forward_masked` runs the same parameters
    layer by layer with a key padding mask, positions and a key/value cache."""

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

    def forward_masked(self, ids, attention_mask=None, position_ids=None, cache=None, logits_to_keep=0):
        """Logits of `ids` ([batch, length]) after the `cache`'s earlier positions (none without one): keys where
        `attention_mask` ([batch, earlier + length], 1 = token, 0 = padding) is 0 are masked, positions count
        the tokens before each one (`position_ids` overrides them), and `cache` gains this step's keys and
        values. `logits_to_keep` > 0 computes the head for that many last positions only."""
        if ids.dim() != 2 or ids.shape[1] == 0:
            raise ValueError("input_ids must be [batch, length] with at least one token")
        batch, length = ids.shape
        past = cache.get_seq_length() if cache is not None else 0
        total = past + length
        if total > self.max_positions:
            raise ValueError(f"{total} positions (cached, new and padding) is more than this model's {self.max_positions} "
                             "(max_position_embeddings); shorten the input or the generation")
        if attention_mask is None:
            attention_mask = torch.ones(batch, total, dtype=torch.long, device=ids.device)
        if tuple(attention_mask.shape) != (batch, total):
            raise ValueError(f"attention_mask is {tuple(attention_mask.shape)}; expected ({batch}, {total}): one entry "
                             "per cached and new position")
        keep = attention_mask.bool()
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        if int(position_ids.max()) >= self.max_positions or int(position_ids.min()) < 0:
            raise ValueError(f"position_ids run from {int(position_ids.min())} to {int(position_ids.max())}; this model has "
                             f"positions 0 to {self.max_positions - 1} (max_position_embeddings)")
        x = self.token_embedding(ids) + self.position_embedding(position_ids)
        query = torch.arange(past, total, device=ids.device)[:, None]
        key = torch.arange(total, device=ids.device)[None, :]
        allowed = keep[:, None, :]
        if self.causal:
            allowed = allowed & (key <= query)
        # A padding position attends to itself, so that no row of the softmax is empty (its output is unused).
        allowed = (allowed | (key == query))[:, None]
        for index, layer in enumerate(self.transformer.layers):
            x = x + self._attention(layer, layer.norm1(x), cache, index, allowed)
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        return self.lm_head(self.ln_f(x))

    @staticmethod
    def _attention(layer, h, cache, index, allowed):
        attention = layer.self_attn
        batch, length, d = h.shape
        heads = attention.num_heads
        qkv = F.linear(h, attention.in_proj_weight, attention.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            k, v = cache.update(k, v, index)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return attention.out_proj(out.transpose(1, 2).reshape(batch, length, d))

    @torch.no_grad()
    def generate(self, prompt_ids, max_new_tokens=100, temperature=0.8, top_p=0.9, eos_token_id=None, generator=None):
        """Samples up to `max_new_tokens` tokens after `prompt_ids` ([batch, length] or [length]) with
        temperature and nucleus (top-p) sampling; temperature 0 is greedy. Stops when every sequence has
        produced `eos_token_id`, or at the model's positions. Each step runs only the new token, against a
        key/value cache of the earlier ones. Returns the prompt and the new tokens."""
        if not self.causal:
            raise ValueError("generate samples left to right: it needs the causal (AR) model")
        ids = prompt_ids if prompt_ids.dim() == 2 else prompt_ids.unsqueeze(0)
        if ids.shape[1] >= self.max_positions:
            raise ValueError(f"the prompt fills the model's {self.max_positions} positions; nothing can follow it")
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        cache, step = _SamplerCache(), ids
        for _ in range(min(max_new_tokens, self.max_positions - ids.shape[1])):
            logits = self.forward_masked(step, cache=cache, logits_to_keep=1)[:, -1].float()
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
            step = nxt.unsqueeze(-1)
            ids = torch.cat([ids, step], dim=1)
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
    def _check_ids(input_ids, token_type_ids=None):
        if input_ids is None:
            raise ValueError("input_ids is required (this model has no inputs_embeds path)")
        # Tokenizers may return token_type_ids (all 0); this model has no token types to tell apart.
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise ValueError("token_type_ids: this model has one token type; pass none, or zeros")
        return input_ids if input_ids.dim() == 2 else input_ids.unsqueeze(0)

    @staticmethod
    def _pads(attention_mask):
        return attention_mask is not None and not bool(attention_mask.bool().all())


class ARAr381MForCausalLM(_AraFusionPreTrainedModel, GenerationMixin):
    """The AR model: `forward` returns next-token logits (and the mean cross-entropy of the shifted labels when
    `labels` are given); `generate` and `pipeline` run with a key/value cache (`DynamicCache`) and padded
    batches; `self.model.generate(...)` is the training code's sampler, cached too."""

    config_class = AraFusionARConfig

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                cache_position=None, labels=None, logits_to_keep=0, return_dict=None, cache=None, token_type_ids=None,
                **kwargs):
        ids = self._check_ids(input_ids, token_type_ids)
        cache = cache if cache is not None else past_key_values
        if use_cache and cache is None:
            cache = DynamicCache()
        cached = cache is not None and use_cache is not False
        keep = logits_to_keep if isinstance(logits_to_keep, int) else 0
        if cached or self._pads(attention_mask) or position_ids is not None:
            logits = self.model.forward_masked(ids, attention_mask, position_ids, cache if cached else None, keep)
        else:
            logits = self.model(ids)
            if keep > 0:
                logits = logits[:, -keep:]
        if not isinstance(logits_to_keep, int):
            logits = logits[:, logits_to_keep]
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                               labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE: cache if cached else None})

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, use_cache=True,
                                      logits_to_keep=None, cache=None, token_type_ids=None, **kwargs):
        cache = cache if cache is not None else past_key_values
        past = cache.get_seq_length() if cache is not None else 0
        inputs = {"input_ids": input_ids[:, past:] if past else input_ids, "attention_mask": attention_mask,
                  "use_cache": use_cache, _CACHE: cache, "token_type_ids": token_type_ids}
        if logits_to_keep is not None:
            inputs["logits_to_keep"] = logits_to_keep
        return inputs


class MDLMForMaskedDiffusion(_AraFusionPreTrainedModel):
    """The MDLM model: bidirectional attention; `forward` returns logits at every position (and the mean
    cross-entropy over the positions whose label is not -100 when `labels` are given); padded keys are masked."""

    config_class = AraFusionMDLMConfig

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, token_type_ids=None, **kwargs):
        ids = self._check_ids(input_ids, token_type_ids)
        logits = self.model.forward_masked(ids, attention_mask) if self._pads(attention_mask) else self.model(ids)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                               ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)
