"""The two fused products of :mod:`cavegpt.model.relu_square` as quack's GEMMs (``quack-kernels``, the CuTe-DSL
kernel library that the ``fa4`` extra installs with FlashAttention-4).

quack's sm_90 GEMMs overlap one tile's epilogue with the next tile's main loop (two consumer warp groups taking
turns, "ping-pong"), which is what a product of depth 768 whose epilogue moves a [128 × 192] tile needs; the
Triton kernels of :mod:`cavegpt.model.relu_square_triton` do not. On an H100 at a `seed` micro-batch
(docs/BENCHMARKS.md, session 24) the forward took 0.206 ms inside a step against Triton's 0.246 alone; `seed`
gained 1.3–1.9 % tokens/s with both products and the head's on quack. The backward's square root must be the
approximate one: with the IEEE square root the backward took 0.60 ms, twice Triton's, and `seed` lost 3 %.

* forward: ``post = relu(x · W_fcᵀ)²``: quack's ``relu_sq`` activation, h not stored;
* backward: ``∂h = (∂y · W_proj) · 2·sqrt(post)``: an epilogue of ours that reads ``post`` as the GEMM's C operand.

Each shape's tile is picked by quack's autotuner on its first call and kept on disk (``~/.quack``).
"""

from __future__ import annotations

import cutlass.cute as cute
from quack.epilogue.frontend import gemm_epilogue
from quack.gemm_interface import gemm_act
from torch import Tensor


@gemm_epilogue()
def _relu_square_grad(acc, c):
    """acc = ∂y · W_proj (= ∂post), c = post = relu(h)²: d relu(h)²/dh = 2·relu(h) = 2·sqrt(post)."""
    return {"D": acc * 2.0 * cute.math.sqrt(c, fastmath=True)}


def relu_square_up(x: Tensor, w_fc: Tensor) -> Tensor:
    """``relu(x · W_fcᵀ)²`` for ``x`` [M, d], ``W_fc`` [4d, d], both 16-bit on CUDA."""
    return gemm_act(x, w_fc.T, activation="relu_sq", store_preact=False)[1]


def relu_square_up_backward(grad_y: Tensor, w_proj: Tensor, post: Tensor) -> Tensor:
    """``(∂y · W_proj) · 2·sqrt(post)`` for ``∂y`` [M, d], ``W_proj`` [d, 4d], ``post`` [M, 4d]."""
    return _relu_square_grad(grad_y, w_proj, post)["D"]
