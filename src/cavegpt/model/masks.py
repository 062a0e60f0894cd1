"""Which keys each query may see: causal ∧ same document ∧ sliding window.

One rule, three forms:

* :func:`allowed` — the rule itself, on index tensors (used by both attention paths and the tests);
* :func:`flex_block_mask` — a FlexAttention ``BlockMask`` built at 128-token block granularity
  (blocks that are entirely allowed are marked "full" and skip the mask function; blocks that
  are entirely forbidden are skipped altogether), as in the modded-nanogpt records since Nov 2024;
* :func:`dense_mask` — a ``[B, 1, T, T]`` boolean matrix for ``scaled_dot_product_attention``,
  the path used on CPU (FlexAttention has no CPU backward) and as the reference in tests.

A document starts at every EOT token (50256): the EOT belongs to the document it opens, which is
how the shards are written (EOT, then the document's tokens).

The window is a 0-d integer tensor, so changing it during training changes data, not code:
``torch.compile`` does not recompile when it grows.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask

EOT_TOKEN = 50256
BLOCK_SIZE = 128


def document_ids(tokens: Tensor) -> Tensor:
    """Index of the document each token belongs to, counting EOTs from the row's start."""
    return (tokens == EOT_TOKEN).cumsum(dim=-1)


def allowed(q_idx: Tensor, kv_idx: Tensor, q_doc: Tensor, kv_doc: Tensor, window: Tensor) -> Tensor:
    """The attention rule: causal, inside the window (``q - k < window``), same document."""
    return (q_idx >= kv_idx) & (q_idx - kv_idx < window) & (q_doc == kv_doc)


def dense_mask(docs: Tensor, window: Tensor) -> Tensor:
    """``[B, 1, T, T]`` boolean mask (True = may attend) for SDPA."""
    positions = torch.arange(docs.size(-1), device=docs.device)
    q_idx, kv_idx = positions[:, None], positions[None, :]
    mask = allowed(q_idx, kv_idx, docs[:, :, None], docs[:, None, :], window)
    return mask[:, None]


def _ordered(blocks: Tensor) -> tuple[Tensor, Tensor]:
    """Dense ``[B, rows, n]`` block booleans → (counts, indices): each row's used blocks first, ascending.

    A stable sort without sorting: a block's place is the number of used blocks before it (or, for an
    unused block, the row's count plus the unused blocks before it), then one scatter. Inductor builds a
    scan for this; for ``argsort`` at 128 blocks per row (16,384-token micro-batches) it built sorting
    networks that took Triton 35-70 s each to compile (docs/BENCHMARKS.md, 2026-11-26, session 10).
    """
    used = blocks.to(torch.int64)
    used_before = used.cumsum(dim=-1) - used
    counts = used.sum(dim=-1)
    block = torch.arange(blocks.size(-1), device=blocks.device).expand_as(used)
    place = torch.where(blocks, used_before, counts[..., None] + block - used_before)
    indices = torch.empty_like(place).scatter_(-1, place, block)
    return counts.to(torch.int32)[:, None].contiguous(), indices.to(torch.int32)[:, None].contiguous()


def _full_and_partial(q_first: Tensor, q_last: Tensor, kv_first: Tensor, kv_last: Tensor,
                      q_block: Tensor, kv_block: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Which block pairs pass the rule for every token pair (full) and for some but not all (partial).

    Blocks are given by index and by the document ids of their first and last tokens, broadcast
    against each other; the result has their broadcast shape.
    """
    distance = (q_block - kv_block) * BLOCK_SIZE  # q_idx - kv_idx between the blocks' first tokens
    # some pair (q, k) of the two blocks passes each test ...
    any_causal = q_block >= kv_block
    any_window = distance - (BLOCK_SIZE - 1) < window
    any_doc = (q_first <= kv_last) & (kv_first <= q_last)
    # ... or every pair does
    all_causal = q_block > kv_block
    all_window = distance + (BLOCK_SIZE - 1) < window
    all_doc = (q_first == kv_last) & (kv_first == q_last)
    full = all_causal & all_window & all_doc
    return full, any_causal & any_window & any_doc & ~full


def flex_block_mask(docs: Tensor, window: Tensor) -> BlockMask:
    """BlockMask for FlexAttention over ``[B, T]`` document ids, ``T`` a multiple of 128.

    Block ``(i, j)`` pairs query block ``i`` with key block ``j``. Because document ids only grow
    along a row, a block touches one document iff its first and last ids match, and two blocks can
    share a document iff their id ranges overlap.
    """
    batch, seq_len = docs.shape
    if seq_len % BLOCK_SIZE:
        raise ValueError(f"sequence length {seq_len} must be a multiple of {BLOCK_SIZE}")
    n_blocks = seq_len // BLOCK_SIZE
    block_docs = docs.view(batch, n_blocks, BLOCK_SIZE)
    first, last = block_docs[..., 0], block_docs[..., -1]
    block = torch.arange(n_blocks, device=docs.device)
    rows, cols = block[:, None], block[None, :]
    row_first, row_last, col_first, col_last = first[:, :, None], last[:, :, None], first[:, None], last[:, None]
    # [B, query block, key block] for the forward's lists, and the same rule computed again as
    # [B, key block, query block] for the backward's (BlockMask.from_kv_blocks would sort to get them;
    # a transposed view here made inductor 2.11 fail to generate the kernel at 256 blocks per row)
    full, partial = _full_and_partial(row_first, row_last, col_first, col_last, rows, cols, window)
    full_by_key, partial_by_key = _full_and_partial(col_first, col_last, row_first, row_last, cols, rows, window)
    kv_partial, kv_full = _ordered(partial), _ordered(full)
    q_partial, q_full = _ordered(partial_by_key), _ordered(full_by_key)

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return allowed(q_idx, kv_idx, docs[b, q_idx], docs[b, kv_idx], window)

    return BlockMask(
        seq_lengths=(seq_len, seq_len),
        kv_num_blocks=kv_partial[0], kv_indices=kv_partial[1],
        full_kv_num_blocks=kv_full[0], full_kv_indices=kv_full[1],
        q_num_blocks=q_partial[0], q_indices=q_partial[1],
        full_q_num_blocks=q_full[0], full_q_indices=q_full[1],
        BLOCK_SIZE=(BLOCK_SIZE, BLOCK_SIZE), mask_mod=mask_mod,
    )
