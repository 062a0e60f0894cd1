"""The row kernel of :mod:`cavegpt.model.head_loss` in Triton: one program per row of logits, one pass over it; and
the FP8 head's rounding of x or W to e4m3 over its scale.

The pass reads each block of the row once, adds its ``exp(capped − cap)`` terms to the row's sum, and (with the
gradient) overwrites the block with ``total · exp(capped − cap) · (1 − tanh²)`` at once, before the row's sum is
known. That is the gradient times the row's sum: the kernel returns ``1 / sum`` as the row's scale, and the head's
two products take it on their [rows × d] sides, where it costs a pass over 768 columns instead of 50,304. The
targets' columns, whose gradient has the one-hot term ``sum · one-hot`` that needs the sum, are written last. Per
row that is one read and one write of the bf16 logits: the kernel with a second read for the sums first took 1.05
ms per chunk of 8,192 rows on an H100, where a read + write of the chunk takes 0.55 ms (docs/BENCHMARKS.md,
sessions 19–20).

Each logit's arithmetic is written to need few instructions: with ``σ = σ(2z / cap)``, the capped logit
``cap · tanh(z / cap)`` is ``cap · (2σ − 1)``; its exponentials are single ``exp2`` of one fused multiply-add, with
the constants folded per row; the slope ``1 − tanh²`` is ``4 · e · σ²`` with ``e = exp(−2z / cap)``, free of the
cancellation of ``1 − tanh²`` near ±1; only the row's last, partial block is masked.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# (block, warps): picked by benchmarks/head_rows_gpu.py on an H100 (docs/BENCHMARKS.md, session 22: 0.594 ms a chunk
# of 8,192 rows, 0.594–0.62 at the other blocks of 1,024–4,096 with 4–16 warps); stages: Triton's default, which
# changed nothing in session 13
BLOCK_SIZE, NUM_WARPS, NUM_STAGES = 2048, 8, 3
LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x · log2 e), and exp2 is one GPU instruction


@triton.jit
def _sigmoid(raw, scale):
    """(σ(2z / cap), e = exp(−2z / cap)) of a block of logits, with ``scale = −2 · log2(e) / cap``. e stops at 2^64
    (z < −22 · cap), where σ ≤ 2^−64 is 0 to float32 sums: e = inf would make the slope e · σ² = inf · 0 = NaN."""
    e = tl.exp2(tl.minimum(raw * scale, 64.0))
    return 1.0 / (1.0 + e), e


@triton.jit
def _block_terms(row_logits, offsets, scale, span, total4, VOCAB: tl.constexpr, MASKED: tl.constexpr,
                 WITH_GRAD: tl.constexpr):
    """exp(capped − cap) = exp2(span · σ − span) over one block, with ``span = 2 · cap · log2(e)``; with the gradient,
    the block is overwritten with total · exp(capped − cap) · (1 − tanh²) = total4 · terms · e · σ²."""
    if MASKED:
        raw = tl.load(row_logits + offsets, mask=offsets < VOCAB, other=0.0)
    else:
        raw = tl.load(row_logits + offsets)
    sigma, e = _sigmoid(raw.to(tl.float32), scale)
    terms = tl.exp2(span * sigma - span)
    if WITH_GRAD:
        grads = (total4 * terms * (e * sigma * sigma)).to(row_logits.dtype.element_ty)
        if MASKED:
            tl.store(row_logits + offsets, grads, mask=offsets < VOCAB)
        else:
            tl.store(row_logits + offsets, grads)
    if MASKED:
        terms = tl.where(offsets < VOCAB, terms, 0.0)
    return terms


@triton.jit
def _row_targets(ahead_ptr, coefs_ptr, row, HORIZON: tl.constexpr, HORIZON_P2: tl.constexpr):
    """(horizon indices, the row's target per horizon (-1 past the row's end), whether it has one, its coefficient (0
    where it has none))."""
    ks = tl.arange(0, HORIZON_P2)
    ahead = tl.load(ahead_ptr + row * HORIZON + ks, mask=ks < HORIZON, other=-1)
    valid = ahead >= 0
    coefs = tl.where(valid, tl.load(coefs_ptr + ks, mask=ks < HORIZON, other=0.0), 0.0)
    return ks, ahead, valid, coefs


@triton.jit
def _store_losses(losses_ptr, row, ks, valid, row_sum, picked_sigma, softcap, HORIZON: tl.constexpr):
    """Each horizon's loss ``log Σ exp z − z[target]`` (0 without a target), with capped logit ``cap · (2σ − 1)``."""
    losses = tl.where(valid, softcap + tl.log(row_sum) - softcap * (2.0 * picked_sigma - 1.0), 0.0)
    tl.store(losses_ptr + row * HORIZON + ks, losses, mask=ks < HORIZON)


@triton.jit
def _one_hot_weights(ahead, coefs):
    """Each target's one-hot weight: the coefficients of every horizon whose target it is (horizons sharing one
    agree)."""
    return tl.sum(tl.where(ahead[:, None] == ahead[None, :], coefs[None, :], 0.0), axis=1)


@triton.jit
def _softcapped_ce_rows(logits_ptr, ahead_ptr, coefs_ptr, losses_ptr, scales_ptr, softcap, VOCAB: tl.constexpr,
                        HORIZON: tl.constexpr, HORIZON_P2: tl.constexpr, BLOCK: tl.constexpr,
                        WHOLE: tl.constexpr, WITH_GRAD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    scale = -2.0 * LOG2E / softcap  # the row's constants, once: every logit then needs only multiply-adds
    span = 2.0 * LOG2E * softcap
    row_logits = logits_ptr + row * VOCAB
    cols = tl.arange(0, BLOCK)

    ks, ahead, valid, coefs = _row_targets(ahead_ptr, coefs_ptr, row, HORIZON, HORIZON_P2)
    picked_sigma, picked_e = _sigmoid(tl.load(row_logits + tl.where(valid, ahead, 0)).to(tl.float32), scale)
    total4 = 4.0 * tl.sum(coefs, axis=0)
    if WITH_GRAD:
        tl.debug_barrier()  # every thread has read the targets' logits before any is overwritten

    terms = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, WHOLE, BLOCK):
        terms += _block_terms(row_logits, start + cols, scale, span, total4, VOCAB, False, WITH_GRAD)
    if WHOLE < VOCAB:
        terms += _block_terms(row_logits, WHOLE + cols, scale, span, total4, VOCAB, True, WITH_GRAD)
    row_sum = tl.sum(terms, axis=0)
    _store_losses(losses_ptr, row, ks, valid, row_sum, picked_sigma, softcap, HORIZON)
    tl.store(scales_ptr + row, 1.0 / row_sum)

    if WITH_GRAD:
        # the targets' columns: (total · exp(capped − cap) − sum · one-hot) · (1 − tanh²)
        one_hot4 = 4.0 * _one_hot_weights(ahead, coefs)
        picked_terms = tl.exp2(span * picked_sigma - span)
        fixed = (total4 * picked_terms - row_sum * one_hot4) * (picked_e * picked_sigma * picked_sigma)
        tl.debug_barrier()  # every block's write has landed before the targets' columns are written over
        tl.store(row_logits + ahead, fixed.to(logits_ptr.dtype.element_ty), mask=valid)


def triton_rows_loss_and_grad(logits: Tensor, ahead: Tensor, coefs: Tensor, softcap: float, with_grad: bool,
                              block: int | None = None, num_warps: int | None = None) -> tuple[Tensor, Tensor]:
    """See :func:`cavegpt.model.head_loss.rows_loss_and_grad`; ``logits`` must be contiguous.

    ``block`` and ``num_warps`` default to the module's ``BLOCK_SIZE`` and ``NUM_WARPS``.
    """
    block, num_warps = block or BLOCK_SIZE, num_warps or NUM_WARPS
    n, vocab = logits.shape
    horizon = ahead.size(1)
    losses = torch.empty(n, horizon, dtype=torch.float32, device=logits.device)
    scales = torch.empty(n, dtype=torch.float32, device=logits.device)
    _softcapped_ce_rows[(n,)](logits, ahead.contiguous(), coefs.contiguous(), losses, scales, softcap, VOCAB=vocab,
                              HORIZON=horizon, HORIZON_P2=triton.next_power_of_2(horizon), BLOCK=block,
                              WHOLE=vocab // block * block,  # the columns of whole blocks, which need no mask
                              WITH_GRAD=with_grad, num_warps=num_warps, num_stages=NUM_STAGES)
    return losses, scales


@triton.jit
def _finish_rows(grads_ptr, row_sums_ptr, x_ptr, w_ptr, ahead_ptr, coefs_ptr, losses_ptr, scales_ptr, softcap,
                 VOCAB: tl.constexpr, TILES: tl.constexpr, TILES_P2: tl.constexpr, D: tl.constexpr,
                 D_P2: tl.constexpr, HORIZON: tl.constexpr, HORIZON_P2: tl.constexpr, WITH_GRAD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    scale = -2.0 * LOG2E / softcap
    span = 2.0 * LOG2E * softcap
    tiles = tl.arange(0, TILES_P2)
    row_sum = tl.sum(tl.load(row_sums_ptr + row * TILES + tiles, mask=tiles < TILES, other=0.0), axis=0)

    # the targets' logits, summed again from x and W's rows in float32: their columns hold the terms, not the logits
    ks, ahead, valid, coefs = _row_targets(ahead_ptr, coefs_ptr, row, HORIZON, HORIZON_P2)
    dims = tl.arange(0, D_P2)
    x = tl.load(x_ptr + row * D + dims, mask=dims < D, other=0.0).to(tl.float32)
    w_rows = w_ptr + tl.where(valid, ahead, 0).to(tl.int64)[:, None] * D + dims[None, :]
    w = tl.load(w_rows, mask=valid[:, None] & (dims[None, :] < D), other=0.0).to(tl.float32)
    picked_sigma, picked_e = _sigmoid(tl.sum(w * x[None, :], axis=1), scale)

    total = tl.sum(coefs, axis=0)
    _store_losses(losses_ptr, row, ks, valid, row_sum, picked_sigma, softcap, HORIZON)
    tl.store(scales_ptr + row, total / row_sum)
    if WITH_GRAD:
        # the row's columns hold t · (1 − tanh²) = 4 · t · e · σ², its gradient over total / sum; the targets' get the
        # one-hot term too, (4 · t − 4 · sum · one-hot / total) · e · σ²
        share = tl.where(total > 0, _one_hot_weights(ahead, coefs) / total, 0.0)
        picked_terms = tl.exp2(span * picked_sigma - span)
        fixed = 4.0 * (picked_terms - row_sum * share) * (picked_e * picked_sigma * picked_sigma)
        tl.store(grads_ptr + row * VOCAB + ahead, fixed.to(grads_ptr.dtype.element_ty), mask=valid)


def triton_finish_rows(grads: Tensor, row_sums: Tensor, x: Tensor, w: Tensor, ahead: Tensor, coefs: Tensor,
                       softcap: float, with_grad: bool) -> tuple[Tensor, Tensor]:
    """(losses [n, K], scales [n]) of rows whose ``grads`` [n, V] hold ``t · (1 − tanh²)`` and ``row_sums`` [n, tiles]
    the sums of ``t`` by column tile (:func:`cavegpt.model.head_loss_quack.softcapped_terms` of ``x`` [n, d] and ``w``
    [V, d]); as :func:`triton_rows_loss_and_grad`, with the gradient, ``grads`` ends as the gradient of
    ``Σ_rows Σ_k coefs[k] · loss[row, k]`` over each row's scale."""
    n, vocab = grads.shape
    d, horizon, tiles = x.size(1), ahead.size(1), row_sums.size(1)
    losses = torch.empty(n, horizon, dtype=torch.float32, device=grads.device)
    scales = torch.empty(n, dtype=torch.float32, device=grads.device)
    _finish_rows[(n,)](grads, row_sums.contiguous(), x.contiguous(), w.contiguous(), ahead.contiguous(),
                       coefs.contiguous(), losses, scales, softcap, VOCAB=vocab, TILES=tiles,
                       TILES_P2=triton.next_power_of_2(tiles), D=d, D_P2=triton.next_power_of_2(d), HORIZON=horizon,
                       HORIZON_P2=triton.next_power_of_2(horizon), WITH_GRAD=with_grad, num_warps=4)
    return losses, scales


@triton.jit
def _scaled_to_e4m3(src_ptr, dst_ptr, scale_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    values = tl.load(src_ptr + offsets, mask=offsets < n, other=0.0).to(tl.float32)
    scaled = tl.math.div_rn(values, tl.load(scale_ptr))  # as PyTorch divides, so the two round alike
    tl.store(dst_ptr + offsets, scaled.to(tl.float8e4nv), mask=offsets < n)


def triton_scaled_to_e4m3(t: Tensor, scale: Tensor, block: int = 4096) -> Tensor:
    """``t / scale`` in e4m3, rounded to nearest (:func:`cavegpt.model.head_loss.to_e4m3`): one read of ``t`` and one
    write of the copy."""
    from cavegpt.model.head_loss import E4M3
    t = t.contiguous()
    out = torch.empty(t.shape, dtype=E4M3, device=t.device)
    _scaled_to_e4m3[(triton.cdiv(t.numel(), block),)](t, out, scale, t.numel(), BLOCK=block, num_warps=8)
    return out
