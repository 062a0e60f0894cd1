"""The LM head, the soft cap and the cross-entropy in one pass: float32 logits never reach memory.

The plain path (``ModelConfig.fused_head=False``) writes the ``[tokens, 50304]`` logits, soft-caps
them in float32 and lets autograd keep what the backward pass needs: on an H100 that costs 17.8 ms
of a 75 ms seed micro-batch (docs/BENCHMARKS.md), mostly moving logits through memory. Here, for
each chunk of ``chunk_tokens`` tokens (``ModelConfig.head_chunk_tokens`` on a GPU):

* ``logits = x · Wᵀ`` in the matmul dtype (bf16 under autocast);
* one kernel reads each row once and overwrites it with the gradient of the objective times the row's
  ``Σ exp(z − cap)``: ``z = cap · tanh(logits / cap)``, ``lse = log Σ exp z``, the loss ``lse − z[target]`` of
  each horizon k, and ``dlogits = (Σ_k a_k · softmax(z) − Σ_k a_k · onehot(target_k)) · (1 − tanh²)``, written as
  ``s · dlogits`` with the row's sum ``s`` and returned with its scale ``1 / s``. The rows' softmax terms are
  written before their sum is known, so each row is read once, not twice (docs/BENCHMARKS.md, session 22);
* ``grad_x = (1 / s) ⊙ (s · dlogits) · W`` and ``grad_W += (s · dlogits)ᵀ · ((1 / s) ⊙ x)``: the scale goes on
  the [rows × d] side of each product.

quack (``quack=True``, ``ModelConfig.quack_gemms``, on Hopper): the row kernel's per-logit work runs in the forward
product's epilogue (:mod:`cavegpt.model.head_loss_quack`), which stores ``dlogits`` over the scale ``(Σ_k a_k) / s``
and adds up each row's terms by column tile; a short kernel per row then takes the sums, the losses and the targets'
columns (:func:`cavegpt.model.head_loss_triton.triton_finish_rows`). No kernel reads the logits.

FP8 (``fp8=True``, ``ModelConfig.head_fp8``): the forward product runs as ``torch._scaled_mm`` on e4m3 copies of x
and W, each over its own scale (its largest |value| lands on e4m3's 448); the soft cap then sees logits computed from
3-bit mantissas, as in the modded-nanogpt records' FP8 head. The gradient's two products stay in the matmul dtype:
the rows' gradients span up to e⁶⁰ from row to row before their scales are known, more than e4m3's range. FP8
matmuls need sm_89 or newer (:func:`fp8_head_applies`).

The gradients are computed in the forward pass because the loss is the last operation of the
model: the backward pass only scales them by the incoming gradient. What stays alive from forward
to backward is ``grad_x`` and ``grad_W`` instead of the logits.

Multi-token prediction (``record``): horizon k (0-based) predicts ``targets[t + k]`` from position
t, for the positions where that is inside the row; ``a_k = weight_k / (rows · (T − k))`` makes
the objective ``Σ_k weight_k · mean loss_k``, the same as the plain path's.

Because ``|z| ≤ cap``, ``Σ exp(z − cap)`` neither overflows nor underflows in float32 (cap ≤ 30:
each term ≥ e⁻⁶⁰), so the kernel needs no running maximum. On CUDA the row kernel is Triton
(:mod:`cavegpt.model.head_loss_triton`); elsewhere it is the same arithmetic in PyTorch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from cavegpt.model.quack_gemms import head_column_tile, quack_runs_on

# On the CPU, the soft cap and softmax run on 32 rows at a time, whose float32 temporaries (6.4 MB each at GPT-2's
# vocabulary) stay within what the allocator reuses and the caches hold (with one size for both, the tiny preset's
# step took 0.48 s in chunks of 8,192 rows, 0.33 s in 64, 0.24 s in 32 and 0.27 s in 16: 2 cores, 2026-11-26); the
# matmuls on 128, where the three products ran 1.7× faster than on 4 × 32 (docs/BENCHMARKS.md, session 21).
CPU_CHUNK_TOKENS = 128
CPU_ROW_BLOCK = 32
E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max
MIN_SCALE = torch.finfo(torch.float32).tiny  # a tensor of zeros keeps a finite scale
FP8_ALIGN = 16  # cuBLAS's FP8 products want every dimension a multiple of 16
# Hopper's FP8 products can sum in the tensor cores' own precision rather than promote to float32 every few steps:
# the head's sums are 768 terms deep, and the modded-nanogpt records' FP8 head sums that way. On an H100 the head's
# product took 2.36 / 2.55 ms so and 2.50 / 2.52 with float32 sums in two calls, 2.8 with a scale per row, 3.9 in
# bf16 (docs/BENCHMARKS.md, session 23, whose learning check ran with this on)
FP8_FAST_ACCUM = True


def fp8_head_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether the head's forward product can run in FP8 for ``x`` [n, d] and ``weight`` [V, d]: on the CPU always
    (PyTorch emulates it); on CUDA from sm_89 on, for ``d`` and ``V`` multiples of 16. (Called inside the compiled
    forward, which folds ``get_device_properties`` to a constant.)"""
    if not x.is_cuda:
        return True
    properties = torch.cuda.get_device_properties(x.device)
    return (properties.major, properties.minor) >= (8, 9) and x.size(-1) % FP8_ALIGN == 0 \
        and weight.size(0) % FP8_ALIGN == 0


def to_e4m3(t: Tensor) -> tuple[Tensor, Tensor]:
    """(``t`` over its scale, in e4m3; the scale, a 0-dim float32 tensor): ``t``'s largest |value| becomes e4m3's
    largest, 448, and every value is rounded to nearest. The scale stays on the device: no host sync."""
    t = t.detach()
    amax = torch.linalg.vector_norm(t, float("inf"), dtype=torch.float32)
    scale = (amax / E4M3_MAX).clamp(min=MIN_SCALE)
    if t.is_cuda:
        from cavegpt.model.head_loss_triton import triton_scaled_to_e4m3
        return triton_scaled_to_e4m3(t, scale), scale
    return (t.float() / scale).to(E4M3), scale


def fp8_product(x8: Tensor, x_scale: Tensor, w8: Tensor, w_scale: Tensor, out: Tensor) -> None:
    """``out = (x_scale · x8) · (w_scale · w8)ᵀ`` (:func:`to_e4m3`'s pairs); rows padded to a multiple of 16 on CUDA."""
    rows = x8.size(0)
    pad = -rows % FP8_ALIGN if x8.is_cuda else 0
    if pad == 0:
        torch._scaled_mm(x8, w8.T, scale_a=x_scale, scale_b=w_scale, out_dtype=out.dtype,
                         use_fast_accum=FP8_FAST_ACCUM, out=out)
        return
    x8 = F.pad(x8.view(torch.uint8), (0, 0, 0, pad)).view(E4M3)
    product = torch._scaled_mm(x8, w8.T, scale_a=x_scale, scale_b=w_scale, out_dtype=out.dtype,
                               use_fast_accum=FP8_FAST_ACCUM)
    out.copy_(product[:rows])


def ahead_targets(targets: Tensor, horizon: int) -> Tensor:
    """``[B, T]`` targets → ``[B·T, horizon]``: column k holds ``targets[b, t + k]``, or -1 past the row's end."""
    return torch.stack([F.pad(targets[:, k:], (0, k), value=-1) for k in range(horizon)], dim=-1).flatten(0, 1)


def rows_loss_and_grad(logits: Tensor, ahead: Tensor, coefs: Tensor, softcap: float,
                       with_grad: bool) -> tuple[Tensor, Tensor]:
    """(per-row losses ``[n, K]``, 0 where the target is -1; the rows' scales ``[n]``). With ``with_grad``,
    ``logits`` is overwritten with the gradient of ``Σ_rows Σ_k coefs[k] · loss[row, k]`` with respect to it, each
    row divided by its scale."""
    if logits.is_cuda:
        from cavegpt.model.head_loss_triton import triton_rows_loss_and_grad
        return triton_rows_loss_and_grad(logits, ahead, coefs, softcap, with_grad)
    blocks = [_cpu_rows_loss_and_grad(logits[start:start + CPU_ROW_BLOCK], ahead[start:start + CPU_ROW_BLOCK],
                                      coefs, softcap, with_grad) for start in range(0, logits.size(0), CPU_ROW_BLOCK)]
    return torch.cat([losses for losses, _ in blocks]), torch.cat([scales for _, scales in blocks])


def _cpu_rows_loss_and_grad(logits: Tensor, ahead: Tensor, coefs: Tensor, softcap: float,
                            with_grad: bool) -> tuple[Tensor, Tensor]:
    # z = cap · tanh(logits / cap) ≤ cap, so exp(z − cap) needs no running maximum, and the gradient reuses those
    # terms; its passes run in place (the tiny preset's CPU step spends most of its time in this head)
    squashed = torch.tanh(logits.float() * (1 / softcap))
    terms = torch.exp(squashed * softcap - softcap)
    total = terms.sum(-1, keepdim=True)
    valid = ahead >= 0
    picked = ahead.clamp(min=0)
    losses = (softcap + torch.log(total) - softcap * squashed.gather(1, picked)) * valid
    if with_grad:
        weights = coefs * valid  # [n, K]: 0 for targets past the row's end
        grad = terms.mul_(weights.sum(-1, keepdim=True))  # total · Σ_k a_k · softmax(z)
        grad.scatter_add_(1, picked, -weights * total)
        torch.mul(grad, squashed.square_().neg_().add_(1), out=logits)  # · (1 − tanh²)
    return losses, total.reciprocal().squeeze(1)


class _WeightCopies:
    """The head weight in the matmul dtype and, for FP8, in e4m3 with its scale: made by every call, or once for many
    calls inside :func:`weight_copies_held`."""

    def __init__(self) -> None:
        self.held = False
        self.key: tuple | None = None
        self.copies: tuple[Tensor, Tensor | None, Tensor | None] | None = None

    def of(self, weight: Tensor, dtype: torch.dtype, fp8: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(W in ``dtype``, W in e4m3 or None, its scale or None)."""
        key = (weight.untyped_storage().data_ptr(), weight.shape, weight.device, dtype, fp8)
        if self.held and key == self.key and self.copies is not None:
            return self.copies
        copies = (weight.detach().to(dtype), *(to_e4m3(weight) if fp8 else (None, None)))
        if self.held:
            self.key, self.copies = key, copies
        return copies


_weight_copies = _WeightCopies()


@contextlib.contextmanager
def weight_copies_held() -> Iterator[None]:
    """Inside, the fused head makes its copies of W (in the matmul dtype and, for FP8, in e4m3) at its first call and
    reuses them: for the micro-batches of one optimizer step, where W does not change. By the kernels' times that
    is 0.14 + ≈ 0.08 ms of each `seed` micro-batch on an H100, not yet told apart end to end (docs/BENCHMARKS.md,
    session 23). Only the caller can know W is unchanged: a weight's version counter cannot tell, since fused Adam
    writes in place without moving it."""
    _weight_copies.held = True
    try:
        yield
    finally:
        _weight_copies.held, _weight_copies.key, _weight_copies.copies = False, None, None


@torch.library.custom_op("cavegpt::softcapped_cross_entropy", mutates_args=())
def _softcapped_cross_entropy(x: Tensor, weight: Tensor, ahead: Tensor, coefs: Tensor, softcap: float,
                              chunk_tokens: int, with_grad: bool, fp8: bool,
                              quack: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(losses [N, K] float32, grad_x [N, d] or empty, grad_weight [V, d] float32 or empty); see the module."""
    w, w8, w_scale = _weight_copies.of(weight, x.dtype, fp8)
    if fp8:
        x8, x_scale = to_e4m3(x)
    losses = x.new_empty(ahead.shape, dtype=torch.float32)
    grad_x = torch.empty_like(x) if with_grad else x.new_empty(0)
    grad_w = torch.empty(weight.shape, dtype=torch.float32, device=x.device) if with_grad else weight.new_empty(0)
    # one buffer for every chunk's logits: ``logits = x[rows] @ w.T`` would hold two chunks at once while the next
    # product is written (`record`'s 131,072-token micro-batch peaked 4.6 GiB higher in chunks of 32,768 than of
    # 8,192, where one chunk is 2.5 GB more; docs/BENCHMARKS.md, session 22)
    buffer = x.new_empty(min(chunk_tokens, x.size(0)), w.size(0))
    for start in range(0, x.size(0), chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        x_rows = x[rows]
        logits = buffer[:x_rows.size(0)]
        if quack:  # the row kernel's per-logit work in the product's epilogue; what is left per row, after it
            from cavegpt.model.head_loss_quack import softcapped_terms
            from cavegpt.model.head_loss_triton import triton_finish_rows
            row_sums = softcapped_terms(x_rows, w, logits, softcap)
            losses[rows], scales = triton_finish_rows(logits, row_sums, x_rows, w, ahead[rows], coefs, softcap,
                                                      with_grad)
        else:
            if fp8:
                fp8_product(x8[rows], x_scale, w8, w_scale, logits)
            else:
                torch.mm(x_rows, w.T, out=logits)
            losses[rows], scales = rows_loss_and_grad(logits, ahead[rows], coefs, softcap, with_grad)
        if with_grad:
            scales = scales.unsqueeze(1)
            torch.mul(_product(logits, w), scales, out=grad_x[rows])
            _accumulate_product(grad_w, logits.T, (x_rows * scales).to(x.dtype), first=start == 0)
    return losses, grad_x, grad_w


def _product(a: Tensor, b: Tensor) -> Tensor:
    """``a · b``, in float32 on CUDA for bf16 ``a`` and ``b`` (the rows' scales then round once, into the result)."""
    return torch.mm(a, b, out_dtype=torch.float32) if a.is_cuda else a @ b


def _accumulate_product(total: Tensor, a: Tensor, b: Tensor, first: bool) -> None:
    """``total (float32) = a · b`` if ``first`` else ``total + a · b``. On CUDA the matmul adds into ``total``
    itself, in float32: a bf16 product added afterwards cost a [V, d] elementwise pass per chunk, ≈ 1 % of a
    ``record`` step (docs/BENCHMARKS.md, session 13); ``beta=0`` leaves the empty tensor's contents unread."""
    if total.is_cuda:
        torch.addmm(total, a, b, beta=0.0 if first else 1.0, out_dtype=torch.float32, out=total)
    elif first:
        total.copy_(a @ b)
    else:
        total += a @ b


@_softcapped_cross_entropy.register_fake
def _(x, weight, ahead, coefs, softcap, chunk_tokens, with_grad, fp8, quack):
    losses = x.new_empty(ahead.shape, dtype=torch.float32)
    if not with_grad:
        return losses, x.new_empty(0), weight.new_empty(0)
    return losses, torch.empty_like(x), weight.new_empty(weight.shape, dtype=torch.float32)


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, ahead: Tensor, coefs: Tensor, softcap: float, chunk_tokens: int,
                with_grad: bool, fp8: bool, quack: bool) -> tuple[Tensor, Tensor]:
        losses, grad_x, grad_w = torch.ops.cavegpt.softcapped_cross_entropy(
            x, weight, ahead, coefs, softcap, chunk_tokens, with_grad, fp8, quack)
        ctx.save_for_backward(grad_x, grad_w)
        ctx.mark_non_differentiable(losses)
        return (losses * coefs).sum(), losses

    @staticmethod
    def backward(ctx, grad_objective: Tensor, _grad_losses: Tensor):
        grad_x, grad_w = ctx.saved_tensors
        return (grad_x * grad_objective.to(grad_x.dtype), grad_w * grad_objective,
                None, None, None, None, None, None, None)


def fused_head_losses(x: Tensor, weight: Tensor, targets: Tensor, loss_weights: Tensor, softcap: float,
                      chunk_tokens: int | None = None, fp8: bool = False,
                      quack: bool = False) -> tuple[Tensor, Tensor]:
    """(objective, losses) of the soft-capped LM head ``weight`` [V, d] on ``x`` [B, T, d].

    ``losses[k]`` is the mean cross-entropy of predicting ``targets`` shifted by k (k = 0: the next
    token) over the positions that have such a target; ``objective = loss_weights · losses``
    carries the gradient (``losses`` carries none). The matmuls run in the autocast dtype when
    autocast is on, the soft cap and the softmax in float32. ``chunk_tokens``: rows of logits at a time
    (default: all of them on a GPU, ``CPU_CHUNK_TOKENS`` elsewhere). ``fp8``: the forward product in FP8 where
    :func:`fp8_head_applies`, in the matmul dtype elsewhere. ``quack``: the forward product of 16-bit operands, when
    not in FP8, is quack's GEMM with the row kernel's per-logit work in its epilogue, where
    :func:`cavegpt.model.quack_gemms.quack_runs_on` and the vocabulary has a
    :func:`~cavegpt.model.quack_gemms.head_column_tile`; cuBLAS's product and the row kernel elsewhere.
    """
    B, T, d = x.shape
    chunk_tokens = chunk_tokens or (B * T if x.is_cuda else CPU_CHUNK_TOKENS)
    horizon = loss_weights.numel()
    if torch.is_autocast_enabled(x.device.type):
        x = x.to(torch.get_autocast_dtype(x.device.type))
    positions = B * (T - torch.arange(horizon, dtype=torch.float32, device=x.device))  # rows that have target k
    coefs = loss_weights.float() / positions
    with_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    x = x.reshape(B * T, d)
    fp8 = fp8 and fp8_head_applies(x, weight)
    quack = quack and not fp8 and x.dtype in (torch.bfloat16, torch.float16) and quack_runs_on(x.device) \
        and head_column_tile(weight.size(0)) is not None
    objective, losses = _HeadLoss.apply(x, weight, ahead_targets(targets, horizon), coefs, softcap, chunk_tokens,
                                        with_grad, fp8, quack)
    return objective, losses.sum(0) / positions
