"""The row kernel of :mod:`cavegpt.model.head_loss` in Triton: one program per row of logits.

Pass 1 sums ``exp(z − cap)`` over the row; the targets' losses follow; pass 2 re-reads the row
(mostly from L2) and writes the gradient over it. Per row that is two reads and one write of the
bf16 logits and nothing in float32: at 32,768 × 50,304 bf16 logits, ≈ 10 GB of traffic.

In a `record` step's profile on an H100 it took 1.5 ms per chunk of 8,192 rows, ≈ 1.6 TB/s, about half the
memory's bandwidth (docs/BENCHMARKS.md, session 12). The suspects are the special-function units, which every
logit visits for exp and reciprocals in both passes, so the soft cap multiplies by ``1 / cap`` rather than dividing.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# (block, warps): picked by benchmarks/head_loss_gpu.py on an H100 (docs/BENCHMARKS.md); stages: Triton's default
BLOCK_SIZE, NUM_WARPS, NUM_STAGES = 2048, 8, 3


@triton.jit
def _tanh(x):
    return 2 * tl.sigmoid(2 * x) - 1


@triton.jit
def _target_terms(offsets, ahead, coefs):
    """Σ_k coefs[k] · (offsets == ahead[k]): the one-hot part of the gradient at each column of ``offsets``."""
    return tl.sum(tl.where(offsets[:, None] == ahead[None, :], coefs[None, :], 0.0), axis=1)


@triton.jit
def _softcapped_ce_rows(logits_ptr, ahead_ptr, coefs_ptr, losses_ptr, softcap, VOCAB: tl.constexpr,
                        HORIZON: tl.constexpr, HORIZON_P2: tl.constexpr, BLOCK: tl.constexpr,
                        WITH_GRAD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    inv_softcap = 1.0 / softcap  # once per row: every logit then multiplies
    row_logits = logits_ptr + row * VOCAB
    cols = tl.arange(0, BLOCK)

    terms = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, VOCAB, BLOCK):
        inside = start + cols < VOCAB
        raw = tl.load(row_logits + start + cols, mask=inside, other=0.0).to(tl.float32)
        terms += tl.where(inside, tl.exp(softcap * _tanh(raw * inv_softcap) - softcap), 0.0)
    lse = softcap + tl.log(tl.sum(terms, axis=0))

    ks = tl.arange(0, HORIZON_P2)
    ahead = tl.load(ahead_ptr + row * HORIZON + ks, mask=ks < HORIZON, other=-1)
    valid = ahead >= 0
    picked = tl.load(row_logits + tl.where(valid, ahead, 0)).to(tl.float32)
    losses = tl.where(valid, lse - softcap * _tanh(picked * inv_softcap), 0.0)
    tl.store(losses_ptr + row * HORIZON + ks, losses, mask=ks < HORIZON)

    if WITH_GRAD:
        coefs = tl.where(valid, tl.load(coefs_ptr + ks, mask=ks < HORIZON, other=0.0), 0.0)
        total = tl.sum(coefs, axis=0)
        tl.debug_barrier()  # every thread has read the targets' logits before any is overwritten
        for start in range(0, VOCAB, BLOCK):
            offsets = start + cols
            inside = offsets < VOCAB
            raw = tl.load(row_logits + offsets, mask=inside, other=0.0).to(tl.float32)
            squashed = _tanh(raw * inv_softcap)
            probs = tl.exp(softcap * squashed - lse)
            grad = total * probs
            # the one-hot terms only where this block holds a target: a scalar test per block instead of a
            # [BLOCK × horizons] comparison at every logit (record, 3 horizons: +1.0 % tokens/s, BENCHMARKS session 9)
            if tl.sum(((ahead >= start) & (ahead < start + BLOCK)).to(tl.int32), axis=0) > 0:
                grad -= _target_terms(offsets, ahead, coefs)
            grad = grad * (1 - squashed * squashed)
            tl.store(row_logits + offsets, grad.to(logits_ptr.dtype.element_ty), mask=inside)


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
                              WITH_GRAD=with_grad, num_warps=num_warps, num_stages=NUM_STAGES)
    return losses
