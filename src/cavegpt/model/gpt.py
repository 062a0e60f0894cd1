"""The cavegpt model: GPT-2 124M as the seed trains it.

Reading order: ``ModelConfig`` → ``Rotary`` → ``CausalSelfAttention`` → ``MLP`` → ``Block`` → ``GPT``.

What the seed names, and where it happens here:

* 12 layers, 6 heads of 128, width 768, vocabulary padded to 50304 (``ModelConfig``).
* Rotary embeddings on Q and K (``Rotary``); QK-norm before them.
* U-Net: the first half of the blocks are encoders whose outputs are added, weighted by the
  learnable ``skip_weights``, to the inputs of the decoders in reverse order (``GPT.forward``).
* Per-block ``lambdas`` mixing the residual stream with ``x0``, the embedding output (``Block``).
* Three ``value_embeds`` tables feeding the first three and last three layers as an alternative
  value stream, mixed with V by a learnable ``lamb`` (``CausalSelfAttention``).
* The smear gate after the token embedding: ``x[t] += smear_lambda * σ(W x[t][:12]) * x[t-1]``
  for t > 0 (``GPT.smear``).
* A per-head ``attn_gate``: ``σ(W x[:12])`` from the block input scales each head's output.
* Backout: the residual after layer ``backout_layer`` is kept as ``x_backout`` and
  ``backout_lambda * x_backout`` is subtracted before the final norm.
* Logits soft-capped as ``30 * tanh(logits / 30)``, in training and in inference.

Where the seed is silent we follow the modded-nanogpt records (KellerJordan/modded-nanogpt):

* Norms: parameter-free RMSNorm before attention, before the MLP, on the embedding output and
  before the LM head; QK-norm (records since Oct 2024).
* MLP: 4× width, ReLU² (record 2024-10-14 "ModernArch").
* Rotary: half-truncated RoPE, base 1024, on the first half of each head's pairs; the other
  half carries no rotation (record 2024-12-10).
* Value embeddings on layers 0, 1, 2 and 9, 10, 11 with tables 0, 1, 2 each time
  (the "012 … 012" layout of record 2024-12-17); ``lamb`` starts at 0.5 and mixes
  ``(1 - lamb) * v + lamb * ve`` (record 2024-12-04, which named it ``lamb``).
* ``skip_weights`` start at 1, block ``lambdas`` at (1, 0) (record 2024-12-10).
* Init: Q, K, V and the MLP's first layer uniform with std ``0.5 / sqrt(fan_in)``; both output
  projections, the LM head and the gates start at zero; embeddings N(0, 1) (records 2024-10 to
  2025-01). ``smear_lambda`` starts at 0, ``backout_lambda`` at 0.5 (records 2025-09-18 and
  2025-10-04), the gates read the first 12 channels (record 2025-08-23), and the backout copy is
  taken after layer 8 (record 2025-10-04).
* No biases anywhere; the LM head is untied from the embedding (record 2024-11-03).

Options of the ``record`` preset (off, and absent from the parameters, in ``seed``):

* A bigram hash embedding: a table of ``bigram_vocab`` rows indexed by a hash of (previous token,
  token), zero at init, added to every block's input with a learnable per-block weight starting at
  0.1 (record 2026-01-19 "BigramHashEmbedding", after Svenstrup et al. 2017, arXiv 1709.03933).
* Multi-token prediction: ``forward(..., loss_weights=w)`` with K weights returns the mean losses of
  predicting the tokens 1 … K ahead from the same logits and their weighted sum (record 2025-12-22).

Attention (:mod:`cavegpt.model.attention`) runs through FlashAttention-4 where it is installed and
supports the GPU, FlexAttention on other GPUs and SDPA with the same mask elsewhere
(``ModelConfig.attention``); :mod:`cavegpt.model.masks` holds the mask. The LM head, soft cap and
loss run fused (:mod:`cavegpt.model.head_loss`, ``ModelConfig.fused_head``), and so can the MLP's
ReLU² with its matmuls (:mod:`cavegpt.model.relu_square`, ``ModelConfig.fused_mlp``) and, when training, Q and K's
norm and rotation with V's mix (:mod:`cavegpt.model.qkv_prep`, ``ModelConfig.fused_qkv_prep``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cavegpt.model.attention import ATTENTION_BACKENDS, Attend, Documents, attention_for
from cavegpt.model.head_loss import ahead_targets, fused_head_losses
from cavegpt.model.qkv_prep import prepare_qkv
from cavegpt.model.relu_square import fused_mlp_runs_on, relu_square_mlp

Rotate = Callable[[Tensor], Tensor]  # [B, T, H, D] → the same, rotated at the batch's positions
Rows = tuple[Tensor, list[Tensor], "Tensor | None"]  # a batch's rows of the token, value and bigram tables
WindowT = TypeVar("WindowT", int, Tensor)  # a window in tokens: a host int, or a tensor the compiled step reads


@dataclass
class ModelConfig:
    """Shape of the network. Defaults are the seed's GPT-2 124M."""

    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 128
    n_layer: int = 12
    n_head: int = 6
    d_model: int = 768
    n_value_embeds: int = 3  # tables; they feed the first and the last n layers
    gate_channels: int = 12  # residual channels read by the smear and attention gates
    backout_layer: int = 8
    logit_softcap: float = 30.0
    window: int = 1792  # the final (and inference) attention window, tokens
    max_seq_len: int = 65536  # rotary table length
    attention: str = "auto"  # "fa4", "flex", "sdpa" (same mask, dense); "auto": see cavegpt.model.attention
    bigram_vocab: int = 0  # rows of the bigram hash embedding (0: none)
    no_attention_layers: tuple[int, ...] = ()  # blocks without attention (the records from 2025-01-13 on: layer 7)
    short_window_layers: tuple[int, ...] = ()  # layers attending over half the window (long-short, record 2025-01-16)
    no_mlp_layers: tuple[int, ...] = ()  # blocks without an MLP (the records from 2025-09-05 on: layer 0)
    fused_head: bool = True  # LM head + soft cap + loss in one pass (cavegpt.model.head_loss); False: plain
    # rows of the fused head's logits alive at a time on a GPU (3.3 GB in bf16 at 32,768): a seed micro-batch's
    # head in one chunk took 13.80 ms on an H100 against 14.29 in four of 8,192, for a peak 1.7 GiB higher
    # (docs/BENCHMARKS.md, session 22); the memory-capped presets keep 8,192
    head_chunk_tokens: int = 32768
    # the fused head's forward product in FP8 (e4m3) on sm_89 and newer, bf16 elsewhere: `seed` +2.0 % tokens/s on an
    # H100, but 300 steps on textmix ended 0.016 and 0.009 higher at two seeds (docs/BENCHMARKS.md, session 23)
    head_fp8: bool = False
    fused_mlp: bool = True  # ReLU² inside the MLP's matmuls when training (cavegpt.model.relu_square); False: plain
    # on sm_90 GPUs where quack-kernels is installed (the fa4 extra), the fused MLP's two products and the fused head's
    # forward product as quack's GEMMs (cavegpt.model.quack_gemms) rather than Triton's and cuBLAS's, the head's soft
    # cap in its product's epilogue: `seed` +1.3–1.9 % tokens/s on H100s, then +2.8–3.3 % more, learning unchanged
    # (docs/BENCHMARKS.md, sessions 24 and 25); elsewhere it changes nothing
    quack_gemms: bool = True
    fused_qkv_prep: bool = True  # Q/K norm + rotary and V's mix in one op each way when training (model.qkv_prep)
    # the embedding rows' gradients summed by token before they reach .grad on CUDA (model.row_grads_triton);
    # False: index_add_, an atomic add per row (`seed` +0.46 % with it on an H100, docs/BENCHMARKS.md session 19)
    row_grads_by_token: bool = True
    # under autocast, the residual stream (x0, the blocks' sums, the skips) in the autocast dtype, as the modded-nanogpt
    # records keep it in bf16: `seed` +5.8 % tokens/s on an H100, but 300 steps on textmix ended 0.017 higher over five
    # seeds, one of them 0.054, past the noise floor (docs/BENCHMARKS.md, session 20); off: float32
    low_precision_residual: bool = False

    def __post_init__(self) -> None:  # JSON (a checkpoint's config) brings lists
        self.no_attention_layers = tuple(self.no_attention_layers)
        self.short_window_layers = tuple(self.short_window_layers)
        self.no_mlp_layers = tuple(self.no_mlp_layers)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @staticmethod
    def short_window(window: WindowT) -> WindowT:
        """The short-window layers' window when the schedule's is ``window`` (an int or a tensor): half of it."""
        return window // 2

    def layer_window(self, layer: int, window: int) -> int:
        """The window ``layer`` attends over when the schedule's is ``window`` (0: the layer has no attention)."""
        if layer in self.no_attention_layers:
            return 0
        return self.short_window(window) if layer in self.short_window_layers else window

    def validate(self) -> None:
        if self.d_model % self.n_head or self.head_dim % 4:
            raise ValueError(f"d_model={self.d_model} must split into n_head={self.n_head} heads "
                             "whose size is a multiple of 4 (rotary)")
        if self.n_layer % 2:
            raise ValueError(f"n_layer={self.n_layer} must be even (U-Net: half encoder, half decoder)")
        if 2 * self.n_value_embeds > self.n_layer:
            raise ValueError(f"n_value_embeds={self.n_value_embeds} needs n_layer >= {2 * self.n_value_embeds}")
        if not 0 <= self.backout_layer < self.n_layer:
            raise ValueError(f"backout_layer={self.backout_layer} must be a layer index below n_layer={self.n_layer}")
        if self.gate_channels > self.d_model:
            raise ValueError(f"gate_channels={self.gate_channels} exceeds d_model={self.d_model}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"attention={self.attention!r}: choose one of {', '.join(ATTENTION_BACKENDS)}")
        if self.bigram_vocab == 1 or self.bigram_vocab < 0:
            raise ValueError(f"bigram_vocab={self.bigram_vocab}: 0 (off) or at least 2 rows")
        for name in ("no_attention_layers", "short_window_layers", "no_mlp_layers"):
            if any(not 0 <= layer < self.n_layer for layer in getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)}: layer indices run from 0 to {self.n_layer - 1}")
        # a block without attention ignores its value embedding (as the records' layer 0 from 2025-09-21 on), but a
        # table that no attention reads would be an embedding that never learns
        attending = [layer for layer in range(self.n_layer) if layer not in self.no_attention_layers]
        unread = set(range(self.n_value_embeds)) - {self.value_embed_table(layer) for layer in attending}
        if unread:
            raise ValueError(f"no_attention_layers={self.no_attention_layers}: value-embedding tables "
                             f"{sorted(unread)} would feed no attention layer; lower n_value_embeds or keep attention "
                             "in one of their layers")

    def value_embed_table(self, layer: int) -> int | None:
        """Which value-embedding table feeds ``layer`` (None: the layer has none)."""
        n = self.n_value_embeds
        if layer < n:
            return layer
        if layer >= self.n_layer - n:
            return layer - (self.n_layer - n)
        return None


BIGRAM_MULTIPLIERS = (36313, 27191)  # record 2026-01-19's: spread the pairs evenly over the rows


def bigram_rows(tokens: Tensor, previous: Tensor, rows: int) -> Tensor:
    """The bigram table row of each (previous, token) pair; ``previous`` < 0 (no previous token) → the last row.

    ``tokens`` and ``previous`` are [B, T] token ids; the hash is
    ``(36313 · token) XOR (27191 · previous) mod (rows - 1)``.
    """
    a, b = BIGRAM_MULTIPLIERS
    hashed = torch.bitwise_xor(a * tokens, b * previous.clamp(min=0)) % (rows - 1)
    return torch.where(previous < 0, rows - 1, hashed)


class _RowsIntoGrad(torch.autograd.Function):
    """Embedding lookups whose backward adds each looked-up row's gradient straight into its table's ``.grad``.

    Autograd's embedding backward builds a dense gradient of the whole table for every micro-batch (zeroed,
    then scattered into), which the trainer then adds to ``.grad``: passes over every row of tables that
    hold most of the parameters (the seed's four: 154M of 278M), for the rows of one micro-batch. Here only
    the looked-up rows move. The tables' own gradients come back as None: their sums are already in
    ``.grad``. The trainer calls it before the compiled forward, so that this backward runs as written.
    With ``by_token`` (``ModelConfig.row_grads_by_token``), on CUDA each token's rows are summed before they reach
    ``.grad`` (:mod:`cavegpt.model.row_grads_triton`) rather than added one by one by ``index_add_``.
    """

    @staticmethod
    def forward(ctx, by_token: bool, *pairs: Tensor) -> tuple[Tensor, ...]:  # index, table, index, table, …
        indices, tables = pairs[0::2], pairs[1::2]
        ctx.save_for_backward(*indices)
        ctx.tables, ctx.by_token = tables, by_token
        ctx.set_materialize_grads(False)
        return tuple(F.embedding(index, table) for index, table in zip(indices, tables))

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[None, ...]:
        sorted_by_index = {}  # the tables looked up with one index share its sort
        for index, table, grad in zip(ctx.saved_tensors, ctx.tables, grads):
            if grad is None:
                continue
            if table.grad is None:
                table.grad = torch.zeros_like(table)
            rows = grad.reshape(-1, table.size(1))
            if ctx.by_token and rows.is_cuda and table.dtype == torch.float32:
                from cavegpt.model.row_grads_triton import add_rows_by_token, sort_tokens
                key = (index.data_ptr(), index.numel())
                if key not in sorted_by_index:
                    sorted_by_index[key] = sort_tokens(index)
                add_rows_by_token(table.grad, *sorted_by_index[key], rows.contiguous())
            else:
                table.grad.index_add_(0, index.flatten(), rows.to(table.dtype))
        return (None,) * (1 + 2 * len(ctx.tables))


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


def init_linear(linear: nn.Linear) -> nn.Linear:
    """Uniform init with std 0.5/sqrt(fan_in) (modded-nanogpt, Jan 2025)."""
    bound = math.sqrt(3) * 0.5 / math.sqrt(linear.in_features)
    nn.init.uniform_(linear.weight, -bound, bound)
    return linear


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    linear = nn.Linear(in_features, out_features, bias=False)
    nn.init.zeros_(linear.weight)
    return linear


class Rotary(nn.Module):
    """Half-truncated RoPE: a quarter of the head's dims rotate, base 1024; the rest pass through."""

    def __init__(self, head_dim: int, max_seq_len: int):
        super().__init__()
        n_rotating = head_dim // 4
        freqs = (1 / 1024) ** torch.linspace(0.0, 1.0, steps=n_rotating, dtype=torch.float32)
        freqs = torch.cat([freqs, freqs.new_zeros(head_dim // 2 - n_rotating)])
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), freqs)
        self.cos = nn.Buffer(angles.cos(), persistent=False)
        self.sin = nn.Buffer(angles.sin(), persistent=False)

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        """Rotate ``x`` [B, T, H, D] at ``positions`` [B, T] (default: 0 … T-1 in every row)."""
        if positions is None:
            cos, sin = self.cos[None, :x.size(1), None, :], self.sin[None, :x.size(1), None, :]
        else:
            cos, sin = self.cos[positions][:, :, None, :], self.sin[positions][:, :, None, :]
        x1, x2 = x.float().chunk(2, dim=-1)
        rotated = torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)
        return rotated.type_as(x)


def prepare_plain(q: Tensor, k: Tensor, v: Tensor, rotary: Rotate, value_embed: Tensor | None,
                  lamb: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Attention's inputs from the heads [B, T, H, D]: Q and K RMS-normed and rotated, V mixed with its value
    embedding by ``lamb`` where the layer has one (:mod:`cavegpt.model.qkv_prep` does this in one op each way)."""
    q, k = rotary(rms_norm(q)), rotary(rms_norm(k))
    if lamb is not None:
        v = (1 - lamb) * v + lamb * value_embed.view_as(v)
    return q, k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, has_value_embed: bool):
        super().__init__()
        d, self.n_head = config.d_model, config.n_head
        self.c_q = init_linear(nn.Linear(d, d, bias=False))
        self.c_k = init_linear(nn.Linear(d, d, bias=False))
        self.c_v = init_linear(nn.Linear(d, d, bias=False))
        self.c_proj = zero_linear(d, d)
        self.attn_gate = zero_linear(config.gate_channels, config.n_head)
        self.lamb = nn.Parameter(torch.tensor(0.5)) if has_value_embed else None
        self.fused_prep = config.fused_qkv_prep

    def forward(self, x: Tensor, value_embed: Tensor | None, rotary: Rotate, attend: Attend) -> Tensor:
        B, T, C = x.shape
        if torch.is_grad_enabled():
            # Q, K and V in one matmul: forward one 2304-wide product instead of three 768-wide ones, backward one
            # 2304-deep product for the input's gradient instead of three and their sum. The weights stay three
            # matrices: Muon orthogonalizes each.
            weight = torch.cat([self.c_q.weight, self.c_k.weight, self.c_v.weight])
            qkv = F.linear(x, weight).view(B, T, 3 * self.n_head, -1)
            if self.fused_prep and isinstance(rotary, Rotary):  # training: positions 0 … T-1
                y = attend(*prepare_qkv(qkv, rotary.cos, rotary.sin, value_embed, self.lamb))
                return self.project(x, y)
            q, k, v = qkv.split(self.n_head, dim=2)
        else:  # inference: copying the weights together would triple what memory-bound decoding reads of them
            q, k, v = (linear(x).view(B, T, self.n_head, -1) for linear in (self.c_q, self.c_k, self.c_v))
        dtype = q.dtype  # the matmuls' dtype (bf16 under autocast); norms and the mix may upcast
        q, k, v = prepare_plain(q, k, v, rotary, value_embed, self.lamb)
        return self.project(x, attend(q.to(dtype), k.to(dtype), v.to(dtype)))

    def project(self, x: Tensor, y: Tensor) -> Tensor:
        """The heads' outputs ``y`` [B, T, H, D], each scaled by its gate (from the block input ``x``), projected."""
        B, T, C = x.shape
        gate = torch.sigmoid(self.attn_gate(x[..., :self.attn_gate.in_features]))
        y = y * gate.unsqueeze(-1)
        return self.c_proj(y.reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_model: int, fused: bool = False, quack: bool = False):
        super().__init__()
        self.c_fc = init_linear(nn.Linear(d_model, 4 * d_model, bias=False))
        self.c_proj = zero_linear(4 * d_model, d_model)
        self.fused, self.quack = fused, quack

    def forward(self, x: Tensor) -> Tensor:
        # the fusion pays where a backward pass runs; inference (and GPUs without the kernels) take the plain MLP
        if self.fused and torch.is_grad_enabled() and fused_mlp_runs_on(x.device):
            return relu_square_mlp(x, self.c_fc.weight, self.c_proj.weight, self.quack)
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        no_attention = layer in config.no_attention_layers
        self.attn = None if no_attention else CausalSelfAttention(config, config.value_embed_table(layer) is not None)
        self.mlp = None if layer in config.no_mlp_layers else MLP(config.d_model, config.fused_mlp, config.quack_gemms)
        self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))
        self.bigram_lambda = nn.Parameter(torch.tensor(0.1)) if config.bigram_vocab else None

    def forward(self, x: Tensor, x0: Tensor, value_embed: Tensor | None, rotary: Rotate, attend: Attend,
                bigram: Tensor | None = None) -> Tensor:
        x = self.lambdas[0] * x + self.lambdas[1] * x0
        if self.bigram_lambda is not None:
            x = x + self.bigram_lambda * bigram
        if self.attn is not None:
            x = x + self.attn(rms_norm(x), value_embed, rotary, attend)
        if self.mlp is not None:
            x = x + self.mlp(rms_norm(x))
        return x


def ahead_losses(logits: Tensor, targets: Tensor, horizon: int) -> Tensor:
    """Mean cross-entropy of predicting ``targets[:, t + k - 1]`` from ``logits[:, t]``, for k = 1 … horizon.

    The plain path (``fused_head=False``) and the reference of :mod:`cavegpt.model.head_loss`. One
    log-sum-exp serves every k; position t counts for k while ``t + k - 1`` is inside the row.
    Every k is computed over all T positions and masked (slices of T - k + 1 positions trip an
    inductor fusion check in PyTorch 2.11: "32768 v.s. 32767").
    """
    B, T, _ = logits.shape
    ahead = ahead_targets(targets, horizon).view(B, T, horizon)  # -1 where t + k - 1 is past the row's end
    nll = torch.logsumexp(logits, dim=-1, keepdim=True) - logits.gather(-1, ahead.clamp(min=0))
    offsets = torch.arange(horizon, device=logits.device)
    return (nll * (ahead >= 0)).sum(dim=(0, 1)) / (B * (T - offsets))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.value_embeds = nn.ModuleList(nn.Embedding(config.vocab_size, d) for _ in range(config.n_value_embeds))
        self.smear_gate = zero_linear(config.gate_channels, 1)
        self.smear_lambda = nn.Parameter(torch.tensor(0.0))
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.skip_weights = nn.Parameter(torch.ones(config.n_layer // 2))
        self.backout_lambda = nn.Parameter(torch.tensor(0.5))
        self.lm_head = zero_linear(d, config.vocab_size)
        self.rotary = Rotary(config.head_dim, config.max_seq_len)
        self.bigram_embed = None
        if config.bigram_vocab:
            self.bigram_embed = nn.Embedding(config.bigram_vocab, d)
            nn.init.zeros_(self.bigram_embed.weight)

    def smear(self, x: Tensor, previous: Tensor | None = None) -> Tensor:
        """Add a gated fraction of each token's embedding to the next token's.

        ``previous`` [B, 1, d] is the embedding before ``x[:, 0]`` (generation with a cache); zeros
        or None mean there is none, as at the start of a training sequence.
        """
        if previous is None:
            previous = torch.zeros_like(x[:, :1])
        gate = self.smear_lambda * torch.sigmoid(self.smear_gate(x[..., :self.smear_gate.in_features]))
        return x + gate * torch.cat([previous, x[:, :-1]], dim=1)

    def residual(self, x: Tensor) -> Tensor:
        """``x`` in the residual stream's dtype: the autocast dtype with ``low_precision_residual``, else as it is."""
        if self.config.low_precision_residual and torch.is_autocast_enabled(x.device.type):
            return x.to(torch.get_autocast_dtype(x.device.type))
        return x

    def look_up(self, tokens: Tensor, cache=None, into_grad: bool = False) -> Rows:
        """The rows of ``tokens`` in the token embedding, each value-embedding table and the bigram table.

        ``into_grad`` (training, outside the compiled forward): the backward pass adds the rows' gradients
        straight into the tables' ``.grad`` (:class:`_RowsIntoGrad`) and gives the tables none of their own.
        """
        indices = [tokens] * (1 + len(self.value_embeds))
        tables = [self.embed.weight, *(table.weight for table in self.value_embeds)]
        if self.bigram_embed is not None:
            prior = F.pad(tokens[:, :-1], (1, 0), value=-1) if cache is None else cache.previous_tokens(tokens)
            indices.append(bigram_rows(tokens, prior, self.config.bigram_vocab))
            tables.append(self.bigram_embed.weight)
        if into_grad:
            pairs = (t for pair in zip(indices, tables) for t in pair)
            rows = _RowsIntoGrad.apply(self.config.row_grads_by_token, *pairs)
        else:
            rows = [F.embedding(index, table) for index, table in zip(indices, tables)]
        n = len(self.value_embeds)
        return rows[0], list(rows[1:1 + n]), rows[1 + n] if self.bigram_embed is not None else None

    def forward(self, tokens: Tensor, window: Tensor, targets: Tensor | None = None, cache=None,
                loss_weights: Tensor | None = None, documents: Documents | None = None, rows: Rows | None = None):
        """``tokens`` [B, T] → soft-capped logits [B, T, V], or the mean loss if ``targets`` given.

        With ``loss_weights`` (K weights) and ``targets``, ``(objective, losses)`` instead: ``losses[k-1]`` is
        the mean loss of predicting the token k ahead (``targets`` shifted by k-1) over the positions that
        have one, ``objective = loss_weights · losses`` carries the gradient.
        ``rows``: the tables' rows for ``tokens``, looked up already (``look_up``; the trainer's path).
        ``documents`` (from the loader) selects FlashAttention-4's packed-document path; ``window`` is then
        a CPU tensor (:mod:`cavegpt.model.attention`).
        With ``cache`` (a :class:`cavegpt.infer.kv_cache.KVCache` that has ``begin``-ed this chunk),
        ``tokens`` continue the cached sequences: keys and values are appended and attended to.
        """
        embedded, value_embeds, bigram = self.look_up(tokens, cache) if rows is None else rows
        if cache is None:  # one mask for every layer; a second, of half the window, for the short-window layers
            shorts = self.config.short_window_layers
            windows = (window, self.config.short_window(window)) if shorts else (window,)
            masked = attention_for(self.config.attention, tokens, windows, documents)
            long, short = masked[0], masked[-1]

            def attend_at(layer: int) -> Attend:
                return short if layer in shorts else long
            rotary, previous = self.rotary, None
        else:
            attend_at, rotary = cache.attention, functools.partial(self.rotary, positions=cache.positions)
            previous, embedded = cache.smear_inputs(embedded)
        x = x0 = self.residual(rms_norm(self.smear(embedded, previous)))
        bigram = None if bigram is None else self.residual(bigram)

        n_encoder = self.config.n_layer // 2
        skips: list[Tensor] = []
        x_backout = None
        for layer, block in enumerate(self.blocks):
            if layer >= n_encoder:
                x = x + self.skip_weights[layer - n_encoder] * skips.pop()
            table = self.config.value_embed_table(layer)
            x = block(x, x0, None if table is None else value_embeds[table], rotary, attend_at(layer), bigram)
            if layer < n_encoder:
                skips.append(x)
            if layer == self.config.backout_layer:
                x_backout = x
        x = rms_norm(x - self.backout_lambda * x_backout)

        cap = self.config.logit_softcap
        if targets is not None and self.config.fused_head:
            weights = loss_weights if loss_weights is not None else torch.ones(1, device=x.device)
            chunk = self.config.head_chunk_tokens if x.is_cuda else None  # the CPU's chunks are the head's own
            objective, losses = fused_head_losses(x, self.lm_head.weight, targets, weights, cap, chunk,
                                                  fp8=self.config.head_fp8, quack=self.config.quack_gemms)
            return objective if loss_weights is None else (objective, losses)
        logits = cap * torch.tanh(self.lm_head(x).float() / cap)
        if targets is None:
            return logits
        if loss_weights is None:
            return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        losses = ahead_losses(logits, targets, loss_weights.numel())
        return losses @ loss_weights.to(losses.dtype), losses

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The seed's four optimizer groups; every parameter is in exactly one."""
        embeddings = [self.embed.weight, *(t.weight for t in self.value_embeds)]
        if self.bigram_embed is not None:
            embeddings.append(self.bigram_embed.weight)
        matrices = [p for name, p in self.blocks.named_parameters() if p.ndim == 2 and "gate" not in name]
        taken = {id(p) for p in (*embeddings, *matrices, self.lm_head.weight)}
        scalars = [p for p in self.parameters() if id(p) not in taken]
        return {"embeddings": embeddings, "lm_head": [self.lm_head.weight], "matrices": matrices, "scalars": scalars}

    def matmul_params(self) -> int:
        """Parameters used in matrix multiplies (for FLOP counts): the 2-D ones but the embedding lookups."""
        lookups = {id(p) for p in self.param_groups()["embeddings"]}
        return sum(p.numel() for p in self.parameters() if p.ndim == 2 and id(p) not in lookups)
