"""The fused head's forward product as quack's GEMM (``quack-kernels``, installed with FlashAttention-4 by the ``fa4``
extra) with the soft cap and the softmax terms in its epilogue, so that no kernel reads the logits again.

Each logit ``z`` of ``x · Wᵀ`` is turned where it is summed, in float32, into what the head's row kernel
(:mod:`cavegpt.model.head_loss_triton`) would make of it, with the same instructions: ``σ = σ(2z / cap)``,
``e = exp(−2z / cap)``, the soft-capped logit's term ``t = exp(cap · tanh(z / cap) − cap)`` and the slope
``1 − tanh² = 4 · e · σ²``. The GEMM stores ``4 · t · e · σ²`` (bf16) in place of the logit and adds ``t`` into one
float32 partial sum per row and column tile. quack's sm_90 GEMM runs one tile's epilogue while the next tile's
main loop runs, so the arithmetic hides behind the product of depth 768. What is left per row (the sum, the loss,
the targets' columns) is :func:`cavegpt.model.head_loss_triton.triton_finish_rows`.

The column tile divides the vocabulary exactly (192 or 128 for GPT-2's 50,304): a partial tile's out-of-bounds
columns would add terms of a zero logit to the sums.
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
def _softcapped_terms(acc, scale, span):
    """acc = z; scale = −2 · log2(e) / cap, span = 2 · cap · log2(e). e stops at 2^64 as in the row kernel: there σ
    is 0 to float32 sums, and e = inf would make the slope inf · 0."""
    e = cute.math.exp2(cute.arch.fmin(acc * scale, 64.0), fastmath=True)
    sigma = cute.arch.rcp_approx(1.0 + e)
    terms = cute.math.exp2(span * sigma - span, fastmath=True)
    return {"D": terms * 4.0 * e * sigma * sigma, "row_sums": terms}


def softcapped_terms(x: Tensor, w: Tensor, out: Tensor, softcap: float) -> Tensor:
    """``out`` [n, V] ← ``4 · t · e · σ²`` of ``z = x · wᵀ`` (``x`` [n, d], ``w`` [V, d], both 16-bit, ``V`` with a
    :func:`~cavegpt.model.quack_gemms.head_column_tile`); returns each row's sums of ``t`` by column tile, [n, V / tile] in float32."""
    tile = head_column_tile(w.size(0))
    row_sums = torch.empty(x.size(0), w.size(0) // tile, dtype=torch.float32, device=x.device)
    _softcapped_terms.gemm(x, w, out, epi_args={"scale": -2 * LOG2E / softcap, "span": 2 * LOG2E * softcap,
                                                "row_sums": row_sums},
                           tile_M=128, tile_N=tile, cluster_M=2, cluster_N=1, pingpong=True)
    return row_sums
