"""The row kernel of :mod:`cavegpt.model.head_loss` in Triton: one program per row of logits.

Pass 1 sums ``exp(capped − cap)`` over the row; the targets' losses follow; pass 2 re-reads the row and
writes the gradient over it. Per row that is two reads and one write of the bf16 logits and nothing in
float32: at 32,768 × 50,304 bf16 logits, ≈ 10 GB of traffic.

The kernel issues more instructions than its memory traffic needs (session 13: 1.31 ms per chunk of 8,192 rows
on an H100, where a read + write of the chunk takes 0.55 ms), so each logit's arithmetic is written to need
few: with ``σ = σ(2z / cap)``, the capped logit ``cap · tanh(z / cap)`` is ``cap · (2σ − 1)``; its exponentials
are single ``exp2`` of one fused multiply-add, with the constants folded per row; the slope ``1 − tanh²`` is
``4 · e · σ²`` with ``e = exp(−2z / cap)``, free of the cancellation of ``1 − tanh²`` near ±1; only the
row's last, partial block is masked. With block and warps picked again, that took the chunk to 1.05 ms.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# (block, warps): picked by benchmarks/head_rows_gpu.py on an H100 (docs/BENCHMARKS.md, session 13); stages: Triton's
# default, which changed nothing there
BLOCK_SIZE, NUM_WARPS, NUM_STAGES = 1024, 16, 3
LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x · log2 e), and exp2 is one GPU instruction


@triton.jit
def _sigmoid(raw, scale):
    """(σ(2z / cap), e = exp(−2z / cap)) of a block of logits, with ``scale = −2 · log2(e) / cap``. e stops at 2^64
    (z < −22 · cap), where σ ≤ 2^−64 is 0 to float32 sums: e = inf would make the slope e · σ² = inf · 0 = NaN."""
    e = tl.exp2(tl.minimum(raw * scale, 64.0))
    return 1.0 / (1.0 + e), e


@triton.jit
def _load(row_logits, offsets, VOCAB: tl.constexpr, MASKED: tl.constexpr):
    if MASKED:
        raw = tl.load(row_logits + offsets, mask=offsets < VOCAB, other=0.0)
    else:
        raw = tl.load(row_logits + offsets)
    return raw.to(tl.float32)


@triton.jit
def _exp_terms(row_logits, offsets, scale, span, VOCAB: tl.constexpr, MASKED: tl.constexpr):
    """exp(capped − cap) = exp2(span · σ − span) over one block, with ``span = 2 · cap · log2(e)``."""
    sigma, _ = _sigmoid(_load(row_logits, offsets, VOCAB, MASKED), scale)
    terms = tl.exp2(span * sigma - span)
    if MASKED:
        terms = tl.where(offsets < VOCAB, terms, 0.0)
    return terms


@triton.jit
def _target_terms(offsets, ahead, coefs):
    """Σ_k coefs[k] · (offsets == ahead[k]): the one-hot part of the gradient at each column of ``offsets``."""
    return tl.sum(tl.where(offsets[:, None] == ahead[None, :], coefs[None, :], 0.0), axis=1)


@triton.jit
def _write_grads(row_logits, start, cols, scale, span, shift, total4, ahead, coefs4, VOCAB: tl.constexpr,
                 BLOCK: tl.constexpr, MASKED: tl.constexpr):
    """Overwrites one block with d loss / d z = (total · p − one-hot) · (1 − tanh²), computed as
    (4 · total · p − 4 · one-hot) · e · σ², where p = exp(capped − lse) = exp2(span · σ − shift)."""
    offsets = start + cols
    sigma, e = _sigmoid(_load(row_logits, offsets, VOCAB, MASKED), scale)
    grad = total4 * tl.exp2(span * sigma - shift)
    # the one-hot terms only where this block holds a target: a scalar test per block instead of a
    # [BLOCK × horizons] comparison at every logit (record, 3 horizons: +1.0 % tokens/s, BENCHMARKS session 9)
    if tl.sum(((ahead >= start) & (ahead < start + BLOCK)).to(tl.int32), axis=0) > 0:
        grad -= _target_terms(offsets, ahead, coefs4)
    grad = grad * (e * sigma * sigma)
    if MASKED:
        tl.store(row_logits + offsets, grad.to(row_logits.dtype.element_ty), mask=offsets < VOCAB)
    else:
        tl.store(row_logits + offsets, grad.to(row_logits.dtype.element_ty))


@triton.jit
def _softcapped_ce_rows(logits_ptr, ahead_ptr, coefs_ptr, losses_ptr, softcap, VOCAB: tl.constexpr,
                        HORIZON: tl.constexpr, HORIZON_P2: tl.constexpr, BLOCK: tl.constexpr,
                        WHOLE: tl.constexpr, WITH_GRAD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    scale = -2.0 * LOG2E / softcap  # the row's constants, once: every logit then needs only multiply-adds
    span = 2.0 * LOG2E * softcap
    row_logits = logits_ptr + row * VOCAB
    cols = tl.arange(0, BLOCK)

    terms = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, WHOLE, BLOCK):
        terms += _exp_terms(row_logits, start + cols, scale, span, VOCAB, False)
    if WHOLE < VOCAB:
        terms += _exp_terms(row_logits, WHOLE + cols, scale, span, VOCAB, True)
    lse = softcap + tl.log(tl.sum(terms, axis=0))

    ks = tl.arange(0, HORIZON_P2)
    ahead = tl.load(ahead_ptr + row * HORIZON + ks, mask=ks < HORIZON, other=-1)
    valid = ahead >= 0
    picked = tl.load(row_logits + tl.where(valid, ahead, 0)).to(tl.float32)
    picked_sigma, _ = _sigmoid(picked, scale)
    losses = tl.where(valid, lse - softcap * (2.0 * picked_sigma - 1.0), 0.0)
    tl.store(losses_ptr + row * HORIZON + ks, losses, mask=ks < HORIZON)

    if WITH_GRAD:
        coefs4 = 4.0 * tl.where(valid, tl.load(coefs_ptr + ks, mask=ks < HORIZON, other=0.0), 0.0)
        total4 = tl.sum(coefs4, axis=0)
        shift = (softcap + lse) * LOG2E
        tl.debug_barrier()  # every thread has read the targets' logits before any is overwritten
        for start in range(0, WHOLE, BLOCK):
            _write_grads(row_logits, start, cols, scale, span, shift, total4, ahead, coefs4, VOCAB, BLOCK, False)
        if WHOLE < VOCAB:
            _write_grads(row_logits, WHOLE, cols, scale, span, shift, total4, ahead, coefs4, VOCAB, BLOCK, True)


def triton_rows_loss_and_grad(logits: Tensor, ahead: Tensor, coefs: Tensor, softcap: float, with_grad: bool,
                              block: int | None = None, num_warps: int | None = None) -> Tensor:
    """See :func:`cavegpt.model.head_loss.rows_loss_and_grad`; ``logits`` must be contiguous.

    ``block`` and ``num_warps`` default to the module's ``BLOCK_SIZE`` and ``NUM_WARPS``.
    """
    block, num_warps = block or BLOCK_SIZE, num_warps or NUM_WARPS
    n, vocab = logits.shape
    horizon = ahead.size(1)
    losses = torch.empty(n, horizon, dtype=torch.float32, device=logits.device)
    _softcapped_ce_rows[(n,)](logits, ahead.contiguous(), coefs.contiguous(), losses, softcap, VOCAB=vocab,
                              HORIZON=horizon, HORIZON_P2=triton.next_power_of_2(horizon), BLOCK=block,
                              WHOLE=vocab // block * block,  # the columns of whole blocks, which need no mask
                              WITH_GRAD=with_grad, num_warps=num_warps, num_stages=NUM_STAGES)
    return losses
