"""The embedding rows' gradients summed by token before they reach a table's ``.grad`` (``ModelConfig.
row_grads_by_token``), in Triton.

``index_add_`` adds every looked-up row into ``.grad`` by an atomic add of its own: 13.1 ms of a `seed` step on an
H100 for the four tables (docs/BENCHMARKS.md, session 18, on uniform random tokens), about twice what its bytes
need; on text the frequent tokens' adds also queue on the same rows. Here the micro-batch's tokens are sorted once
(the four tables share them); each program takes ``BLOCK`` consecutive sorted positions and ``BLOCK_C`` channels,
sums the rows of each run of one token by a segmented scan, and adds each run's sum into ``.grad`` with one atomic
add. A token's rows meet in one add per block they span instead of one per occurrence.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

# picked by benchmarks/row_grads_gpu.py on an H100 (docs/BENCHMARKS.md, session 19): the four tables at a `seed`
# micro-batch's shape in 0.497 ms on uniform tokens and 0.323 ms on English text, against index_add_'s 0.771 / 0.733
BLOCK, BLOCK_C, NUM_WARPS = 32, 128, 4


@triton.jit
def _segment_sum(starts_a, sum_a, starts_b, sum_b):
    """Combine of a segmented sum: a later element that starts a run drops what came before it."""
    return starts_a | starts_b, tl.where(starts_b != 0, sum_b, sum_a + sum_b)


@triton.jit
def _add_runs_kernel(grad_ptr, order_ptr, tokens_ptr, table_grad_ptr, n, channels,
                     BLOCK: tl.constexpr, BLOCK_C: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    position = tl.program_id(0) * BLOCK + offsets
    inside = position < n
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = inside[:, None] & (cols < channels)[None, :]
    token = tl.load(tokens_ptr + position, mask=inside, other=-1)
    before = tl.load(tokens_ptr + position - 1, mask=inside & (offsets > 0), other=-1)
    after = tl.load(tokens_ptr + position + 1, mask=(position + 1 < n) & (offsets < BLOCK - 1), other=-1)
    source = tl.load(order_ptr + position, mask=inside, other=0).to(tl.int64)
    rows = tl.load(grad_ptr + source[:, None] * channels + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    starts = tl.broadcast_to(((token != before) | (offsets == 0)).to(tl.int32)[:, None], (BLOCK, BLOCK_C))
    _, sums = tl.associative_scan((starts, rows), 0, _segment_sum)
    ends = (token != after) | (offsets == BLOCK - 1)  # a run's last row in this block carries its sum
    tl.atomic_add(table_grad_ptr + token.to(tl.int64)[:, None] * channels + cols[None, :], sums,
                  mask=mask & ends[:, None], sem="relaxed")


def sort_tokens(index: Tensor) -> tuple[Tensor, Tensor]:
    """(the tokens sorted, the position each came from) for :func:`add_rows_by_token`; one sort serves every table
    looked up with ``index``."""
    return torch.sort(index.flatten())


def add_rows_by_token(table_grad: Tensor, sorted_tokens: Tensor, order: Tensor, grad: Tensor) -> None:
    """``table_grad.index_add_(0, index, grad)`` for ``(sorted_tokens, order) = sort_tokens(index)`` and ``grad``
    [n, C] contiguous (any float dtype; summed in float32 into the float32 ``table_grad``)."""
    n, channels = grad.shape
    grid = (triton.cdiv(n, BLOCK), triton.cdiv(channels, BLOCK_C))
    _add_runs_kernel[grid](grad, order, sorted_tokens, table_grad, n, channels, BLOCK=BLOCK, BLOCK_C=BLOCK_C,
                           num_warps=NUM_WARPS)
