"""Attention's inputs from the joined Q/K/V product in one pass each way (``ModelConfig.fused_qkv_prep``).

The plain path norms Q and K (RMS over each head), rotates them (:class:`cavegpt.model.gpt.Rotary`) and mixes V
with its value embedding, ``(1 − λ)·v + λ·ve``; inductor fuses that, but its kernels for the Q/K pair took about
twice the time their bytes need at the H100's bandwidth (23.7 ms forward, 37.6 ms backward per `seed` step,
docs/BENCHMARKS.md, sessions 16 and 17). Here

* forward: a kernel reads each Q and K head once and writes it normed and rotated, one launch for Q and one for K
  (FA4's backward gives their gradients apart too, so nothing joins them); V's mix stays in PyTorch (inside the
  compiled graph, inductor fuses it);
* backward: a kernel reads each head's ``∂y`` and ``x`` once and writes ``∂x`` into its place in one ``∂qkv``;
  another writes V's part beside it, ``∂v·(1 − λ)`` (a strided copy by PyTorch took 13.2 ms of a `seed` step,
  session 18); the embedding's and λ's gradients stay in PyTorch, fused by inductor.

Per head of ``D`` channels, with ``r = (mean(x²) + ε)^(-1/2)``, ``n = x·r`` and the rotation ``R`` of the first
``D/2`` pairs: ``y = R·n``, so ``∂n = Rᵀ·∂y`` and ``∂x = r·(∂n − n·mean(∂n·n))``. On CUDA the Q/K passes are Triton
kernels (:mod:`cavegpt.model.qkv_prep_triton`); on the CPU the same arithmetic runs in PyTorch (the tests' path).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = torch.finfo(torch.float32).eps  # F.rms_norm's default for the float32 it computes in under autocast


def _rotate(n1: Tensor, n2: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    return n1 * cos + n2 * sin, n2 * cos - n1 * sin


def _heads_and_tables(qk: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(x1, x2, r, cos, sin) in float32 for ``qk`` [B, T, heads, D]: the heads' halves, their inverse RMS, and the
    tables at positions 0 … T-1, shaped to broadcast."""
    x1, x2 = qk.float().chunk(2, dim=-1)
    r = torch.rsqrt((x1.square().sum(-1, keepdim=True) + x2.square().sum(-1, keepdim=True)) / qk.size(-1) + EPS)
    T = qk.size(1)
    return x1, x2, r, cos[None, :T, None, :], sin[None, :T, None, :]


def _norm_rotate_reference(qk: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2, r, cos, sin = _heads_and_tables(qk, cos, sin)
    return torch.cat(_rotate(x1 * r, x2 * r, cos, sin), dim=-1).to(qk.dtype)


def _norm_rotate_backward_reference(grad: Tensor, qk: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2, r, cos, sin = _heads_and_tables(qk, cos, sin)
    n1, n2 = x1 * r, x2 * r
    g1, g2 = grad.float().chunk(2, dim=-1)
    d1, d2 = _rotate(g1, g2, cos, -sin)  # Rᵀ: the rotation by the opposite angle
    dot = ((d1 * n1).sum(-1, keepdim=True) + (d2 * n2).sum(-1, keepdim=True)) / qk.size(-1)
    return torch.cat((r * (d1 - n1 * dot), r * (d2 - n2 * dot)), dim=-1).to(qk.dtype)


def _triton_applies(heads: Tensor) -> bool:
    half = heads.size(-1) // 2
    return heads.is_cuda and half & (half - 1) == 0  # the kernels' blocks span a half: a power of two


def _norm_rotate(heads: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    if _triton_applies(heads):
        from cavegpt.model.qkv_prep_triton import norm_rotate
        return norm_rotate(heads, cos, sin)
    return _norm_rotate_reference(heads, cos, sin)


def _norm_rotate_backward(grad: Tensor, heads: Tensor, cos: Tensor, sin: Tensor, out: Tensor) -> None:
    if _triton_applies(heads):
        from cavegpt.model.qkv_prep_triton import norm_rotate_backward
        norm_rotate_backward(grad, heads, cos, sin, out=out)
    else:
        out.copy_(_norm_rotate_backward_reference(grad, heads, cos, sin))


def _v_backward(grad: Tensor, lamb: Tensor | None, out: Tensor) -> None:
    if _triton_applies(grad):
        from cavegpt.model.qkv_prep_triton import v_backward
        v_backward(grad, lamb, out)
    else:
        out.copy_(grad if lamb is None else grad.float() * (1 - lamb))


@torch.library.custom_op("cavegpt::norm_rotate_qk", mutates_args=())
def _norm_rotate_qk(qkv: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Q and K of ``qkv`` [B, T, 3H, D], normed and rotated: two [B, T, H, D] tensors in ``qkv``'s dtype."""
    q, k, _ = qkv.chunk(3, dim=2)
    return _norm_rotate(q, cos, sin), _norm_rotate(k, cos, sin)


@_norm_rotate_qk.register_fake
def _(qkv, cos, sin):
    B, T, heads, D = qkv.shape
    return qkv.new_empty(B, T, heads // 3, D), qkv.new_empty(B, T, heads // 3, D)


@torch.library.custom_op("cavegpt::qkv_backward", mutates_args=())
def _qkv_backward(grad_q: Tensor, grad_k: Tensor, grad_v: Tensor, qkv: Tensor, cos: Tensor, sin: Tensor,
                  lamb: Tensor | None) -> Tensor:
    """∂qkv [B, T, 3H, D] from the gradients of the outputs q, k, v, each [B, T, H, D] (V mixed by ``lamb``)."""
    grad_qkv = torch.empty_like(qkv)
    grad_qkv_q, grad_qkv_k, grad_qkv_v = grad_qkv.chunk(3, dim=2)
    for grad, heads, out in zip((grad_q, grad_k), qkv.chunk(3, dim=2), (grad_qkv_q, grad_qkv_k)):
        _norm_rotate_backward(grad, heads, cos, sin, out)
    _v_backward(grad_v, lamb, grad_qkv_v)
    return grad_qkv


@_qkv_backward.register_fake
def _(grad_q, grad_k, grad_v, qkv, cos, sin, lamb):
    return torch.empty_like(qkv)


class _PrepareQKV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: Tensor, cos: Tensor, sin: Tensor, value_embed: Tensor | None,
                lamb: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        q, k = torch.ops.cavegpt.norm_rotate_qk(qkv, cos, sin)
        v = qkv.chunk(3, dim=2)[2]  # without a value embedding, a view: FA4 reads it in place
        if value_embed is not None:
            mixed = (1 - lamb) * v.float() + lamb * value_embed.view_as(v).float()
            # not .to() when it would return ``mixed`` itself: under PyTorch 2.11's torch.compile that alias of an
            # intermediate takes V's gradient away from this output (zeros for V, the embedding and λ; pytorch#180642)
            v = mixed if mixed.dtype == qkv.dtype else mixed.to(qkv.dtype)
        ctx.save_for_backward(qkv, cos, sin, value_embed, lamb)
        return q, k, v

    @staticmethod
    def backward(ctx, grad_q: Tensor, grad_k: Tensor, grad_v: Tensor):
        qkv, cos, sin, value_embed, lamb = ctx.saved_tensors
        grad_embed = grad_lamb = None
        if value_embed is not None:  # the embedding's and λ's: in PyTorch, which inductor fuses into one kernel
            v = qkv.chunk(3, dim=2)[2].float()
            grad = grad_v.float()  # heads first under FlexAttention: reshaped, not viewed, into the embedding's shape
            grad_embed = (grad * lamb).to(value_embed.dtype).reshape_as(value_embed)
            grad_lamb = (grad * (value_embed.view_as(v).float() - v)).sum().to(lamb.dtype)
        grad_qkv = torch.ops.cavegpt.qkv_backward(grad_q.contiguous(), grad_k.contiguous(), grad_v.contiguous(), qkv,
                                                  cos, sin, lamb)
        return grad_qkv, None, None, grad_embed, grad_lamb


def prepare_qkv(qkv: Tensor, cos: Tensor, sin: Tensor, value_embed: Tensor | None = None,
                lamb: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(q, k, v) [B, T, H, D] for attention from ``qkv`` [B, T, 3H, D]: Q and K normed and rotated at positions
    0 … T-1 (``cos``, ``sin``: [≥ T, D/2] float32 tables), V mixed with ``value_embed`` by ``lamb`` when given."""
    return _PrepareQKV.apply(qkv, cos, sin, value_embed, lamb)
