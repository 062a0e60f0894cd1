"""The matmul of :mod:`cavegpt.model.relu_square` in Triton, with ReLU² (forward) or its derivative
(backward) applied to each output tile before it is stored.

One persistent kernel, one program per SM walking the output tiles in groups of ``GROUP_M`` rows so
that neighbouring programs share tiles of B in L2. The operands come in through TMA tensor
descriptors (Hopper's bulk copy engine), so this path is for sm_90 and newer.

* forward: ``out = relu(a · bᵀ)²`` with ``a = x``, ``b = W_fc``;
* backward: ``out = (a · bᵀ) · 2·sqrt(post)`` with ``a = ∂y``, ``b = W_projᵀ`` and ``post`` the
  forward's output, because d relu(h)²/dh = 2·relu(h) = 2·sqrt(relu(h)²).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.tools.tensor_descriptor import TensorDescriptor

GROUP_M = tl.constexpr(8)  # rows of tiles that share B in L2 (a constexpr: kernels read no other globals)


def _descriptor_blocks(nargs: dict) -> None:
    """A descriptor's block shape is part of it: set the chosen tile's before each launch."""
    bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
    nargs["a_desc"].block_shape = [bm, bk]
    nargs["b_desc"].block_shape = [bn, bk]
    nargs["out_desc"].block_shape = [bm, bn]
    nargs["post_desc"].block_shape = [bm, bn]


# tile shapes and pipelines tried on the first call of each shape; the fastest is kept for the process
CONFIGS = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": 64}, num_stages=stages, num_warps=warps,
                         pre_hook=_descriptor_blocks)
           for bm, bn, stages, warps in ((128, 256, 3, 8), (128, 128, 4, 8), (128, 128, 3, 4), (64, 256, 4, 4))]


@triton.jit
def _tile_origin(tile, tiles_m, tiles_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP: tl.constexpr):
    per_group = GROUP * tiles_n
    first_m = (tile // per_group) * GROUP
    rows = tl.minimum(tiles_m - first_m, GROUP)
    m = first_m + (tile % per_group) % rows
    n = (tile % per_group) // rows
    return m * BLOCK_M, n * BLOCK_N


@triton.autotune(CONFIGS, key=["M", "N", "K", "BACKWARD"])
@triton.jit
def _relu_square_matmul(a_desc, b_desc, out_desc, post_desc, M, N, K, NUM_PROGRAMS: tl.constexpr,
                        BACKWARD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, NUM_PROGRAMS, flatten=True):
        off_m, off_n = _tile_origin(tile, tiles_m, tiles_n, BLOCK_M, BLOCK_N, GROUP_M)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(0, K, BLOCK_K):
            acc = tl.dot(a_desc.load([off_m, k]), b_desc.load([off_n, k]).T, acc)
        if BACKWARD:
            out = acc * 2 * tl.sqrt(post_desc.load([off_m, off_n]).to(tl.float32))
        else:
            positive = tl.maximum(acc, 0.0)
            out = positive * positive
        out_desc.store([off_m, off_n], out.to(out_desc.dtype))


def relu_square_matmul(a: Tensor, b: Tensor, post: Tensor | None = None, config: triton.Config | None = None) -> Tensor:
    """``relu(a · bᵀ)²``, or with ``post`` the backward ``(a · bᵀ) · 2·sqrt(post)``; ``a`` [M, K], ``b`` [N, K]
    and ``post`` [M, N] contiguous, of one dtype, which the result has too. ``config``: this tile and
    pipeline instead of the fastest of ``CONFIGS`` (tests, benchmarks)."""
    (M, K), N = a.shape, b.size(0)
    out = a.new_empty(M, N)
    placeholder = [1, 1]  # each descriptor's block shape; _descriptor_blocks sets the real one
    descriptors = [TensorDescriptor.from_tensor(t, placeholder) for t in (a, b, out, out if post is None else post)]
    programs = torch.cuda.get_device_properties(a.device).multi_processor_count if a.is_cuda else 4

    def grid(meta: dict) -> tuple[int]:
        return (min(programs, triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])),)
    args = (*descriptors, M, N, K)
    if config is None:
        _relu_square_matmul[grid](*args, NUM_PROGRAMS=programs, BACKWARD=post is not None)
        return out
    meta = {**config.all_kwargs(), "NUM_PROGRAMS": programs, "BACKWARD": post is not None}
    _descriptor_blocks({"a_desc": descriptors[0], "b_desc": descriptors[1], "out_desc": descriptors[2],
                        "post_desc": descriptors[3], **meta})
    _relu_square_matmul.fn[grid](*args, **meta)
    return out


def chosen_config(a: Tensor, b: Tensor, backward: bool = False) -> str:
    """The tile the autotuner kept for these operands (after a call), for benchmarks' logs."""
    for key, config in _relu_square_matmul.cache.items():
        if tuple(key[:4]) == (a.size(0), b.size(0), a.size(1), backward):
            return str(config)
    return "none yet"
