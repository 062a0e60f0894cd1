"""The LM head, the soft cap and the cross-entropy in one pass: float32 logits never reach memory.

The plain path (``ModelConfig.fused_head=False``) writes the ``[tokens, 50304]`` logits, soft-caps
them in float32 and lets autograd keep what the backward pass needs: on an H100 that costs 17.8 ms
of a 75 ms seed micro-batch (docs/BENCHMARKS.md), mostly moving logits through memory. Here, for
each chunk of ``CHUNK_TOKENS`` tokens:

* ``logits = x · Wᵀ`` in the matmul dtype (bf16 under autocast);
* one kernel reads each row twice and overwrites it with the gradient of the objective:
  ``z = cap · tanh(logits / cap)``, ``lse = log Σ exp z``, the loss ``lse − z[target]`` of each
  horizon k, and ``dlogits = (Σ_k a_k · softmax(z) − Σ_k a_k · onehot(target_k)) · (1 − tanh²)``;
* ``grad_x = dlogits · W`` and ``grad_W += dlogitsᵀ · x``.

The gradients are computed in the forward pass because the loss is the last operation of the
model: the backward pass only scales them by the incoming gradient. What stays alive from forward
to backward is ``grad_x`` and ``grad_W`` instead of the logits.

Multi-token prediction (``record``): horizon k (0-based) predicts ``targets[t + k]`` from position
t, for the positions where that is inside the row; ``a_k = weight_k / (rows · (T − k))`` makes
the objective ``Σ_k weight_k · mean loss_k``, the same as the plain path's.

FP8 (``fp8=True``, ``record``): the forward matmul runs as ``torch._scaled_mm`` on e4m3 copies of x
and W, each scaled by its own amax (per tensor, on the device: no host sync), with float32
accumulation; the gradients use the same bf16 matmuls as without. The soft cap then sees logits
carrying e4m3's 3-bit mantissa, as in the speedrun records' FP8 head (2024-12 onwards), which also
keep the backward matmuls in higher precision or e5m2. FP8 matmuls need sm_89 or newer
(:func:`fp8_unavailable`); elsewhere the head runs in bf16.

Because ``|z| ≤ cap``, ``Σ exp(z − cap)`` neither overflows nor underflows in float32 (cap ≤ 30:
each term ≥ e⁻⁶⁰), so the kernel needs no running maximum. On CUDA the row kernel is Triton
(:mod:`cavegpt.model.head_loss_triton`); elsewhere it is the same arithmetic in PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK_TOKENS = 8192  # rows of logits alive at a time: 0.8 GB in bf16 at GPT-2's vocabulary
E4M3 = torch.float8_e4m3fn
FP8_ROWS = 16  # _scaled_mm wants every dimension a multiple of 16


def fp8_unavailable(device: torch.device) -> str | None:
    """Why FP8 matmuls cannot run on ``device``, or None when they can (CPUs emulate them)."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device)
        return f"{name} (sm_{''.join(map(str, torch.cuda.get_device_capability(device)))}) has no FP8 matmuls (sm_89+)"
    return None


def to_e4m3(t: Tensor) -> tuple[Tensor, Tensor]:
    """(``t / scale`` in e4m3, ``scale``): the tensor's amax lands on e4m3's largest value."""
    scale = (t.detach().abs().amax().float() / torch.finfo(E4M3).max).clamp(min=1e-30)
    return (t / scale).to(E4M3), scale


def fp8_logits(x8: Tensor, x_scale: Tensor, w8: Tensor, w_scale: Tensor, out_dtype: torch.dtype) -> Tensor:
    """``x · Wᵀ`` from e4m3 operands; rows padded to a multiple of 16 for the matmul and cut after."""
    rows = x8.size(0)
    padded = F.pad(x8.view(torch.uint8), (0, 0, 0, -rows % FP8_ROWS)).view(E4M3)
    return torch._scaled_mm(padded, w8.T, scale_a=x_scale, scale_b=w_scale, out_dtype=out_dtype)[:rows]


def ahead_targets(targets: Tensor, horizon: int) -> Tensor:
    """``[B, T]`` targets → ``[B·T, horizon]``: column k holds ``targets[b, t + k]``, or -1 past the row's end."""
    return torch.stack([F.pad(targets[:, k:], (0, k), value=-1) for k in range(horizon)], dim=-1).flatten(0, 1)


def rows_loss_and_grad(logits: Tensor, ahead: Tensor, coefs: Tensor, softcap: float, with_grad: bool) -> Tensor:
    """Per-row losses ``[n, K]`` (0 where the target is -1); with ``with_grad``, ``logits`` is overwritten
    with the gradient of ``Σ_rows Σ_k coefs[k] · loss[row, k]`` with respect to it."""
    if logits.is_cuda:
        from cavegpt.model.head_loss_triton import triton_rows_loss_and_grad
        return triton_rows_loss_and_grad(logits, ahead, coefs, softcap, with_grad)
    squashed = torch.tanh(logits.float() / softcap)
    z = softcap * squashed
    lse = torch.logsumexp(z, dim=-1, keepdim=True)
    valid = ahead >= 0
    picked = ahead.clamp(min=0)
    losses = (lse - z.gather(1, picked)) * valid
    if with_grad:
        weights = coefs * valid  # [n, K]: 0 for targets past the row's end
        grad = torch.exp(z - lse) * weights.sum(-1, keepdim=True)
        grad.scatter_add_(1, picked, -weights)
        logits.copy_(grad * (1 - squashed * squashed))
    return losses


@torch.library.custom_op("cavegpt::softcapped_cross_entropy", mutates_args=())
def _softcapped_cross_entropy(x: Tensor, weight: Tensor, ahead: Tensor, coefs: Tensor, softcap: float,
                              chunk_tokens: int, with_grad: bool, fp8: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(losses [N, K] float32, grad_x [N, d] or empty, grad_weight [V, d] float32 or empty); see the module."""
    w = weight.to(x.dtype)
    if fp8:
        (x8, x_scale), (w8, w_scale) = to_e4m3(x), to_e4m3(weight)
    losses = x.new_empty(ahead.shape, dtype=torch.float32)
    grad_x = torch.empty_like(x) if with_grad else x.new_empty(0)
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=x.device) if with_grad else weight.new_empty(0)
    for start in range(0, x.size(0), chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        logits = fp8_logits(x8[rows], x_scale, w8, w_scale, x.dtype) if fp8 else x[rows] @ w.T
        losses[rows] = rows_loss_and_grad(logits, ahead[rows], coefs, softcap, with_grad)
        if with_grad:
            torch.mm(logits, w, out=grad_x[rows])
            grad_w += logits.T @ x[rows]  # the matmul dtype's rounding, as autocast's own backward has
    return losses, grad_x, grad_w


@_softcapped_cross_entropy.register_fake
def _(x, weight, ahead, coefs, softcap, chunk_tokens, with_grad, fp8):
    losses = x.new_empty(ahead.shape, dtype=torch.float32)
    if not with_grad:
        return losses, x.new_empty(0), weight.new_empty(0)
    return losses, torch.empty_like(x), weight.new_empty(weight.shape, dtype=torch.float32)


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, ahead: Tensor, coefs: Tensor, softcap: float, chunk_tokens: int,
                with_grad: bool, fp8: bool) -> tuple[Tensor, Tensor]:
        losses, grad_x, grad_w = torch.ops.cavegpt.softcapped_cross_entropy(
            x, weight, ahead, coefs, softcap, chunk_tokens, with_grad, fp8)
        ctx.save_for_backward(grad_x, grad_w)
        ctx.mark_non_differentiable(losses)
        return (losses * coefs).sum(), losses

    @staticmethod
    def backward(ctx, grad_objective: Tensor, _grad_losses: Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_objective.to(grad_x.dtype), grad_w * grad_objective, None, None, None, None, None, None


def fused_head_losses(x: Tensor, weight: Tensor, targets: Tensor, loss_weights: Tensor, softcap: float,
                      chunk_tokens: int = CHUNK_TOKENS, fp8: bool = False) -> tuple[Tensor, Tensor]:
    """(objective, losses) of the soft-capped LM head ``weight`` [V, d] on ``x`` [B, T, d].

    ``losses[k]`` is the mean cross-entropy of predicting ``targets`` shifted by k (k = 0: the next
    token) over the positions that have such a target; ``objective = loss_weights · losses``
    carries the gradient (``losses`` carries none). The matmuls run in the autocast dtype when
    autocast is on, the soft cap and the softmax in float32. ``fp8``: the forward matmul in e4m3 where
    :func:`fp8_unavailable` allows, in the autocast dtype elsewhere.
    """
    B, T, d = x.shape
    horizon = loss_weights.numel()
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    positions = B * (T - torch.arange(horizon, dtype=torch.float32, device=x.device))  # rows that have target k
    coefs = loss_weights.float() / positions
    with_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    objective, losses = _HeadLoss.apply(x.reshape(B * T, d), weight, ahead_targets(targets, horizon), coefs,
                                        softcap, chunk_tokens, with_grad, fp8 and fp8_unavailable(x.device) is None)
    return objective, losses.sum(0) / positions
