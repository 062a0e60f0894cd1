"""The matmul of :mod:`cavegpt.model.relu_square` in Triton, with ReLU² (forward) or its derivative
(backward) applied to each output tile before it is stored.

One persistent kernel, one program per SM walking the output tiles in groups of ``GROUP_M`` rows so
that neighbouring programs share tiles of B in L2. The operands come in through TMA tensor
descriptors (Hopper's bulk copy engine), so this path is for sm_90 and newer.

* forward: ``out = relu(a · b)²`` with ``a = x``, ``b = W_fcᵀ``;
* backward: ``out = (a · b) · 2·sqrt(post)`` with ``a = ∂y``, ``b = W_proj`` and ``post`` the
  forward's output, because d relu(h)²/dh = 2·relu(h) = 2·sqrt(relu(h)²).

Each weight is read as it lies in memory (``W_fc`` by rows of K, ``W_proj`` by rows of N), so neither
is transposed into a copy first.
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
    nargs["b_desc"].block_shape = [bk, bn] if nargs["B_KN"] else [bn, bk]
    nargs["out_desc"].block_shape = [bm, bn // nargs["SUBTILE"]]
    nargs["post_desc"].block_shape = [bm, bn // nargs["SUBTILE"]]


def _config(bm: int, bn: int, stages: int, warps: int, subtile: int = 1, bk: int = 64,
            warp_specialize: bool = False) -> triton.Config:
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SUBTILE": subtile,
                          "WARP_SPECIALIZE": warp_specialize}, num_stages=stages, num_warps=warps,
                         pre_hook=_descriptor_blocks)


# tile shapes, pipelines and epilogue splits tried on the first call of each shape; the fastest is kept for the
# process. An epilogue in two halves holds half the tile of ``post`` and of the output at a time: the shared
# memory that lets the backward take the 128×256 tile.
# On an H100 (docs/BENCHMARKS.md, session 14) the forward took 128×256 whole, the backward 128×256 in halves;
# 128×128 with 4 warps is for cards of less shared memory.
CONFIGS = [_config(128, 256, 3, 8), _config(128, 128, 4, 8), _config(128, 128, 3, 4),
           _config(128, 256, 3, 8, subtile=2)]


@triton.jit
def _tile_origin(tile, tiles_m, tiles_n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP: tl.constexpr):
    per_group = GROUP * tiles_n
    first_m = (tile // per_group) * GROUP
    rows = tl.minimum(tiles_m - first_m, GROUP)
    m = first_m + (tile % per_group) % rows
    n = (tile % per_group) // rows
    return m * BLOCK_M, n * BLOCK_N


@triton.jit
def _store(acc, out_desc, post_desc, off_m, off_n, BACKWARD: tl.constexpr):
    if BACKWARD:
        out = acc * 2 * tl.sqrt(post_desc.load([off_m, off_n]).to(tl.float32))
    else:
        positive = tl.maximum(acc, 0.0)
        out = positive * positive
    out_desc.store([off_m, off_n], out.to(out_desc.dtype))


@triton.jit
def _output_tile(a_desc, b_desc, out_desc, post_desc, tile, tiles_m, tiles_n, K, BACKWARD: tl.constexpr,
                 B_KN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                 SUBTILE: tl.constexpr):
    off_m, off_n = _tile_origin(tile, tiles_m, tiles_n, BLOCK_M, BLOCK_N, GROUP_M)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        if B_KN:
            acc = tl.dot(a_desc.load([off_m, k]), b_desc.load([k, off_n]), acc)
        else:
            acc = tl.dot(a_desc.load([off_m, k]), b_desc.load([off_n, k]).T, acc)
    if SUBTILE == 1:
        _store(acc, out_desc, post_desc, off_m, off_n, BACKWARD)
    else:
        left, right = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N // 2)), (0, 2, 1)))
        _store(left, out_desc, post_desc, off_m, off_n, BACKWARD)
        _store(right, out_desc, post_desc, off_m, off_n + BLOCK_N // 2, BACKWARD)


@triton.autotune(CONFIGS, key=["M", "N", "K", "BACKWARD", "B_KN"])
@triton.jit
def _relu_square_matmul(a_desc, b_desc, out_desc, post_desc, M, N, K, NUM_PROGRAMS: tl.constexpr,
                        BACKWARD: tl.constexpr, B_KN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, SUBTILE: tl.constexpr, WARP_SPECIALIZE: tl.constexpr = False):
    tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    if WARP_SPECIALIZE:  # loads in a warp of their own, so a tile's epilogue overlaps the next tile's loads
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, NUM_PROGRAMS, warp_specialize=True):
            _output_tile(a_desc, b_desc, out_desc, post_desc, tile, tiles_m, tiles_n, K, BACKWARD, B_KN, BLOCK_M,
                         BLOCK_N, BLOCK_K, SUBTILE)
    else:  # tile and k loops flattened into one software pipeline (warp specialization needs them apart on sm_90)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, NUM_PROGRAMS, flatten=True):
            _output_tile(a_desc, b_desc, out_desc, post_desc, tile, tiles_m, tiles_n, K, BACKWARD, B_KN, BLOCK_M,
                         BLOCK_N, BLOCK_K, SUBTILE)


def relu_square_matmul(a: Tensor, b: Tensor, post: Tensor | None = None, config: triton.Config | None = None) -> Tensor:
    """``relu(a · b)²``, or with ``post`` the backward ``(a · b) · 2·sqrt(post)``; ``a`` [M, K] and ``post``
    [M, N] contiguous, of one dtype, which the result has too. ``b`` [K, N] is read where it lies, contiguous
    or the transpose of a contiguous [N, K] (a weight's ``.T``): no copy of it is made. ``config``: this tile
    and pipeline instead of the fastest of ``CONFIGS`` (tests, benchmarks)."""
    (M, K), N = a.shape, b.size(1)
    b_kn = b.is_contiguous()
    stored = b if b_kn else b.T.contiguous()  # a weight's .T: already contiguous, so no copy
    out = a.new_empty(M, N)
    placeholder = [1, 1]  # each descriptor's block shape; _descriptor_blocks sets the real one
    operands = (a, stored, out, out if post is None else post)
    descriptors = [TensorDescriptor.from_tensor(t, placeholder) for t in operands]
    programs = torch.cuda.get_device_properties(a.device).multi_processor_count if a.is_cuda else 4

    def grid(meta: dict) -> tuple[int]:
        return (min(programs, triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"])),)
    args = (*descriptors, M, N, K)
    flags = {"NUM_PROGRAMS": programs, "BACKWARD": post is not None, "B_KN": b_kn}
    if config is None:
        _relu_square_matmul[grid](*args, **flags)
        return out
    meta = {**config.all_kwargs(), **flags}
    _descriptor_blocks({"a_desc": descriptors[0], "b_desc": descriptors[1], "out_desc": descriptors[2],
                        "post_desc": descriptors[3], **meta})
    _relu_square_matmul.fn[grid](*args, **meta)
    return out


def chosen_config(a: Tensor, b: Tensor, backward: bool = False) -> str:
    """The tile the autotuner kept for ``relu_square_matmul(a, b, ...)`` (after a call), for benchmarks' logs."""
    for key, config in _relu_square_matmul.cache.items():
        if tuple(key[:5]) == (a.size(0), b.size(1), a.size(1), backward, b.is_contiguous()):
            return str(config)
    return "none yet"
