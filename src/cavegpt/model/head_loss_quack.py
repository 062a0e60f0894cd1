"""The fused head's forward product as quack's GEMM (``quack-kernels``, installed with FlashAttention-4 by the ``fa4``
extra) with the soft cap and the softmax terms in its epilogue, so that no kernel reads the logits again.

Each logit ``z`` of ``x · Wᵀ`` is turned where it is summed, in float32, into what the head's row kernel
(:mod:`cavegpt.model.head_loss_triton`) makes of it: with ``τ = tanh(z / cap)``, the soft-capped logit's term
``t = exp(cap · τ − cap)`` and its slope ``1 − τ²``. The GEMM stores ``t · (1 − τ²)`` in place of the logit and adds
``t`` into one float32 partial sum per row and column tile. quack's sm_90 GEMM runs one tile's epilogue while the
next tile's main loop runs, so the arithmetic hides behind the product of depth 768. What is left per row (the sum,
the loss, the targets' columns) is :func:`cavegpt.model.head_loss_triton.triton_finish_rows`.

The epilogue takes two special-function instructions per logit: ``tanh.approx`` and ``ex2.approx``. The row kernel's
three (σ by a reciprocal, as it computes ``τ = 2σ − 1``) made the product 4.70 ms at a `seed` micro-batch on an H100,
this 3.68, against 3.59 for the bare product at the same tile (docs/BENCHMARKS.md, session 25). ``tanh.approx`` errs
by about 2⁻¹¹ of τ, so ``cap · τ`` by at most 0.015 at cap 30: less than the row kernel's own input error, the bf16
rounding of the raw logit (2⁻⁹ of it). The targets' logits, which the loss reads, are summed again exactly per row.

The column tile divides the vocabulary exactly (:func:`~cavegpt.model.quack_gemms.head_column_tile`): a partial
tile's out-of-bounds columns would add terms of a zero logit to the sums.
"""

from __future__ import annotations

import cutlass.cute as cute
import torch
from quack.epilogue.frontend import gemm_epilogue
from quack.epilogue.ops import ColVecReduce
from torch import Tensor

from cavegpt.model.quack_gemms import head_column_tile

LOG2E = 1.4426950408889634  # exp(x) = exp2(x · log2 e), one instruction


@gemm_epilogue(reduces={"row_sums": ColVecReduce("row_sums")})
def _softcapped_terms(acc, inv_cap, span):
    """acc = z; inv_cap = 1 / cap, span = cap · log2(e): t = exp(cap · τ − cap) = exp2(span · τ − span)."""
    squashed = cute.math.tanh(acc * inv_cap, fastmath=True)
    terms = cute.math.exp2(span * squashed - span, fastmath=True)
    return {"D": terms * (1.0 - squashed * squashed), "row_sums": terms}


def softcapped_terms(x: Tensor, w: Tensor, out: Tensor, softcap: float) -> Tensor:
    """``out`` [n, V] ← ``t · (1 − τ²)`` of ``z = x · wᵀ`` (``x`` [n, d], ``w`` [V, d], both 16-bit, ``V`` with a
    :func:`~cavegpt.model.quack_gemms.head_column_tile`); returns each row's sums of ``t`` by column tile,
    [n, V / tile] in float32."""
    tile = head_column_tile(w.size(0))
    row_sums = torch.empty(x.size(0), w.size(0) // tile, dtype=torch.float32, device=x.device)
    _softcapped_terms.gemm(x, w, out, epi_args={"inv_cap": 1 / softcap, "span": LOG2E * softcap,
                                                "row_sums": row_sums},
                           tile_M=128, tile_N=tile, cluster_M=2, cluster_N=1, pingpong=True)
    return row_sums
