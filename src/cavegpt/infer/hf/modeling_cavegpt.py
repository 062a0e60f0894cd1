"""A cavegpt GPT for Hugging Face ``transformers``, written by ``cavegpt export --format hf``.

A second copy of the math of ``cavegpt.model.gpt`` (the training model) and of its KV cache
(``cavegpt.infer.kv_cache``), so that the exported folder needs no cavegpt. cavegpt's tests check
that this file gives cavegpt's logits and greedy tokens.

What a cavegpt model sees: a document starts at every EOT (50256) and attends only within itself,
causally, at most ``window`` tokens back (half of it in ``short_window_layers``; blocks in
``no_attention_layers`` have no attention, those in ``no_mlp_layers`` no MLP); rotary positions count
real tokens; the smear gate adds a gated fraction of the previous token's embedding; value embeddings,
a bigram hash embedding (``record`` models), U-Net skips, backout and soft-capped logits. Left padding
(``attention_mask``) is invisible to real tokens. ``generate()`` runs with this file's own cache (greedy
and sampling; beam search, which reorders caches, is not supported).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_cavegpt import EOT_TOKEN, CavegptConfig

BIGRAM_MULTIPLIERS = (36313, 27191)
# transformers 5 renamed the outputs' past_key_values to cache; generate() reads the one its version has
CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotate(x: Tensor, positions: Tensor) -> Tensor:
    """Half-truncated RoPE (base 1024, a quarter of the head's dims) of ``x`` [B, T, H, D] at ``positions`` [B, T]."""
    head_dim = x.size(-1)
    n_rotating = head_dim // 4
    freqs = (1 / 1024) ** torch.linspace(0.0, 1.0, steps=n_rotating, dtype=torch.float32, device=x.device)
    freqs = torch.cat([freqs, freqs.new_zeros(head_dim // 2 - n_rotating)])
    angles = positions.float()[..., None] * freqs  # [B, T, D/2]
    cos, sin = angles.cos()[:, :, None, :], angles.sin()[:, :, None, :]
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


def bigram_rows(tokens: Tensor, previous: Tensor, rows: int) -> Tensor:
    a, b = BIGRAM_MULTIPLIERS
    hashed = torch.bitwise_xor(a * tokens, b * previous.clamp(min=0)) % (rows - 1)
    return torch.where(previous < 0, rows - 1, hashed)


def value_embed_table(config: CavegptConfig, layer: int) -> int | None:
    n = config.n_value_embeds
    if layer < n:
        return layer
    if layer >= config.n_layer - n:
        return layer - (config.n_layer - n)
    return None


def layer_window(config: CavegptConfig, layer: int) -> int:
    """The window ``layer`` attends over (0: none)."""
    if layer in config.no_attention_layers:
        return 0
    return config.window // 2 if layer in config.short_window_layers else config.window


class CavegptCache:
    """Everything that looks backwards, for sequences that grow chunk by chunk (see the module docstring)."""

    is_compileable = False  # what transformers' generate() asks of a cache
    is_croppable = False

    def __init__(self, config: CavegptConfig, batch: int, device: torch.device):
        self.keys: list[Tensor | None] = [None] * config.n_layer
        self.values: list[Tensor | None] = [None] * config.n_layer
        self.docs = torch.empty(batch, 0, dtype=torch.long, device=device)
        self.valid = torch.empty(batch, 0, dtype=torch.bool, device=device)
        self.docs_so_far = torch.zeros(batch, dtype=torch.long, device=device)
        self.positions_so_far = torch.zeros(batch, dtype=torch.long, device=device)
        self.last_embedding = torch.zeros(batch, 1, config.d_model, device=device)
        self.last_token = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.windows = [layer_window(config, layer) for layer in range(config.n_layer)]

    def get_seq_length(self, layer: int = 0) -> int:
        return self.docs.size(1)

    def begin(self, tokens: Tensor, valid: Tensor) -> None:
        """Positions, the mask and the carried state for the chunk ``tokens`` [B, T] (``valid`` False: padding)."""
        eot = (tokens == EOT_TOKEN) & valid
        docs = torch.where(valid, self.docs_so_far[:, None] + eot.cumsum(-1), -1)
        self.positions = self.positions_so_far[:, None] + (valid.cumsum(-1) - 1).clamp(min=0)
        self.docs, self.valid = torch.cat([self.docs, docs], 1), torch.cat([self.valid, valid], 1)
        total, length = self.docs.size(1), tokens.size(1)
        q_idx = torch.arange(total - length, total, device=tokens.device)[:, None]
        k_idx = torch.arange(total, device=tokens.device)[None, :]
        allowed = (k_idx <= q_idx) & (self.docs[:, None, :] == docs[:, :, None]) & self.valid[:, None, :]
        self.masks = {window: ((allowed & (q_idx - k_idx < window)) | (k_idx == q_idx))[:, None]  # padding sees
                      for window in set(self.windows) - {0}}  # only itself: no empty rows
        self.chunk_valid = valid
        self.chunk_has_valid = valid.any(-1)
        self.chunk_last = (valid.cumsum(-1) == valid.sum(-1, keepdim=True)) & valid
        self.docs_so_far = self.docs_so_far + eot.sum(-1)
        self.positions_so_far = self.positions_so_far + valid.sum(-1)

    def smear_inputs(self, embedded: Tensor) -> tuple[Tensor, Tensor]:
        embedded = embedded * self.chunk_valid[..., None]
        previous = self.last_embedding.to(embedded.dtype)
        last = (embedded * self.chunk_last[..., None]).sum(1, keepdim=True)
        self.last_embedding = torch.where(self.chunk_has_valid[:, None, None], last.float(), self.last_embedding)
        return previous, embedded

    def previous_tokens(self, tokens: Tensor) -> Tensor:
        valid = self.chunk_valid
        shifted = torch.cat([self.last_token[:, None], tokens[:, :-1]], dim=1)
        shifted_valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)
        previous = torch.where(shifted_valid, shifted, self.last_token[:, None])
        last = (tokens * self.chunk_last).sum(-1)
        self.last_token = torch.where(self.chunk_has_valid, last, self.last_token)
        return previous

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Append this chunk's keys and values [B, T, H, D] to ``layer``'s and attend over all of them."""
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        if self.keys[layer] is not None:
            k, v = torch.cat([self.keys[layer], k], 2), torch.cat([self.values[layer], v], 2)
        self.keys[layer], self.values[layer] = k, v
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=self.masks[self.windows[layer]])
        return out.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: CavegptConfig, has_value_embed: bool):
        super().__init__()
        d, self.n_head = config.d_model, config.n_head
        self.c_q, self.c_k, self.c_v, self.c_proj = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.attn_gate = nn.Linear(config.gate_channels, config.n_head, bias=False)
        self.lamb = nn.Parameter(torch.tensor(0.5)) if has_value_embed else None

    def forward(self, x: Tensor, value_embed: Tensor | None, cache: CavegptCache, layer: int) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, -1)
        k = self.c_k(x).view(B, T, self.n_head, -1)
        v = self.c_v(x).view(B, T, self.n_head, -1)
        dtype = q.dtype
        q, k = rotate(rms_norm(q), cache.positions), rotate(rms_norm(k), cache.positions)
        if self.lamb is not None:
            v = (1 - self.lamb) * v + self.lamb * value_embed.view_as(v)
        y = cache.attend(layer, q.to(dtype), k.to(dtype), v.to(dtype))
        y = y * torch.sigmoid(self.attn_gate(x[..., :self.attn_gate.in_features])).unsqueeze(-1)
        return self.c_proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model, bias=False)
        self.c_proj = nn.Linear(4 * d_model, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: CavegptConfig, layer: int):
        super().__init__()
        self.attn = None if layer in config.no_attention_layers else \
            Attention(config, value_embed_table(config, layer) is not None)
        self.mlp = None if layer in config.no_mlp_layers else MLP(config.d_model)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))
        self.bigram_lambda = nn.Parameter(torch.tensor(0.1)) if config.bigram_vocab else None

    def forward(self, x, x0, value_embed, cache, layer, bigram):
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        if self.bigram_lambda is not None:
            x = x + self.bigram_lambda * bigram
        if self.attn is not None:
            x = x + self.attn(rms_norm(x), value_embed, cache, layer)
        if self.mlp is not None:
            x = x + self.mlp(rms_norm(x))
        return x


class CavegptForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = CavegptConfig
    base_model_prefix = "cavegpt"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]

    def __init__(self, config: CavegptConfig):
        super().__init__(config)
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.value_embeds = nn.ModuleList(nn.Embedding(config.vocab_size, d) for _ in range(config.n_value_embeds))
        self.smear_gate = nn.Linear(config.gate_channels, 1, bias=False)
        self.smear_lambda = nn.Parameter(torch.tensor(0.0))
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.skip_weights = nn.Parameter(torch.ones(config.n_layer // 2))
        self.backout_lambda = nn.Parameter(torch.tensor(0.5))
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.bigram_embed = nn.Embedding(config.bigram_vocab, d) if config.bigram_vocab else None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Weights always come from an export; a fresh model gets small random ones."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02 if isinstance(module, nn.Linear) else 1.0)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() is to leave the cache to this model

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, cache: CavegptCache | None = None,
                past_key_values: CavegptCache | None = None, use_cache: bool | None = None, labels: Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> CausalLMOutputWithPast:
        """Logits [B, T, V] of ``input_ids`` continuing ``cache`` (a new sequence without one).

        ``attention_mask`` [B, cached + T] marks left padding with 0. ``labels`` [B, T] give the mean
        next-token loss (-100 ignored), shifted inside as transformers' causal models do.
        """
        cache = cache if cache is not None else past_key_values
        keep = use_cache if use_cache is not None else getattr(self.config, "use_cache", True)
        tokens = input_ids
        B, T = tokens.shape
        if cache is None:
            cache = CavegptCache(self.config, B, tokens.device)
        valid = attention_mask[:, -T:].bool() if attention_mask is not None else torch.ones_like(tokens, dtype=torch.bool)
        cache.begin(tokens, valid)

        value_embeds = [table(tokens) for table in self.value_embeds]
        previous, embedded = cache.smear_inputs(self.embed(tokens))
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(embedded[..., :self.smear_gate.in_features]))
        smeared = embedded + gate * torch.cat([previous, embedded[:, :-1]], dim=1)
        bigram = None
        if self.bigram_embed is not None:
            prior = cache.previous_tokens(tokens)
            bigram = self.bigram_embed(bigram_rows(tokens, prior, self.config.bigram_vocab))
        x = x0 = rms_norm(smeared)

        n_encoder = self.config.n_layer // 2
        skips: list[Tensor] = []
        x_backout = None
        for layer, block in enumerate(self.blocks):
            if layer >= n_encoder:
                x = x + self.skip_weights[layer - n_encoder] * skips.pop()
            table = value_embed_table(self.config, layer)
            x = block(x, x0, None if table is None else value_embeds[table], cache, layer, bigram)
            if layer < n_encoder:
                skips.append(x)
            if layer == self.config.backout_layer:
                x_backout = x
        x = rms_norm(x - self.backout_lambda * x_backout)
        cap = self.config.logit_softcap
        logits = cap * torch.tanh(self.lm_head(x).float() / cap)
        logits[..., self.config.text_vocab_size:] = -math.inf  # vocabulary padding: no text has these ids

        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: cache if keep else None})

    def prepare_inputs_for_generation(self, input_ids: Tensor, cache: CavegptCache | None = None,
                                      past_key_values: CavegptCache | None = None,
                                      attention_mask: Tensor | None = None, **kwargs) -> dict:
        """Only the tokens the cache has not seen yet, with the whole attention mask."""
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            input_ids = input_ids[:, cache.get_seq_length():]
        return {"input_ids": input_ids, "cache": cache, "attention_mask": attention_mask,
                "use_cache": kwargs.get("use_cache")}
