"""The Q/K passes of :mod:`cavegpt.model.qkv_prep` in Triton, and V's backward: each program takes ``BLOCK_ROWS``
heads (rows of ``D`` channels, ``D/2`` per half) and reads each once.

Forward: ``r = (mean(x²) + ε)^(-1/2)``, ``n = x·r``, then the rotation of the halves by the position's angles.
Backward: the same ``n`` recomputed from ``x``, ``∂n = Rᵀ·∂y``, ``∂x = r·(∂n − n·mean(∂n·n))``, written where
the caller says (a slice of the whole ``∂qkv``). V's backward: ``∂v·(1 − λ)`` (or ``∂v`` without a value
embedding) written into its slice of ``∂qkv``. All arithmetic in float32; one rounding at the store.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from cavegpt.model.qkv_prep import EPS

BLOCK_ROWS, NUM_WARPS = 32, 4  # a first guess: to be picked on an H100 (benchmarks/qkv_prep_gpu.py)
RMS_EPS = tl.constexpr(EPS)


@triton.jit
def _rows(x_ptr, x_token_stride, block, rows, heads, seq_len, cos_ptr, sin_ptr,
          HALF: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    """The block's rows: (n1, n2, r, cos, sin, token, head, mask), the normed halves and the position's tables
    [BLOCK_ROWS, HALF], the inverse RMS [BLOCK_ROWS]."""
    row = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    mask = row < rows
    token = (row // heads).to(tl.int64)
    head = row % heads
    cols = tl.arange(0, HALF)[None, :]
    first = x_ptr + (token * x_token_stride + head * (2 * HALF))[:, None] + cols
    x1 = tl.load(first, mask=mask[:, None], other=0.0).to(tl.float32)
    x2 = tl.load(first + HALF, mask=mask[:, None], other=0.0).to(tl.float32)
    table = (token % seq_len)[:, None] * HALF + cols
    cos = tl.load(cos_ptr + table, mask=mask[:, None], other=0.0)
    sin = tl.load(sin_ptr + table, mask=mask[:, None], other=0.0)
    r = tl.rsqrt((tl.sum(x1 * x1, axis=1) + tl.sum(x2 * x2, axis=1)) / (2 * HALF) + RMS_EPS)
    return x1 * r[:, None], x2 * r[:, None], r, cos, sin, token, head, mask


@triton.jit
def _store(out_ptr, out_token_stride, token, head, mask, y1, y2, HALF: tl.constexpr):
    cols = tl.arange(0, HALF)[None, :]
    first = out_ptr + (token * out_token_stride + head * (2 * HALF))[:, None] + cols
    tl.store(first, y1.to(out_ptr.dtype.element_ty), mask=mask[:, None])
    tl.store(first + HALF, y2.to(out_ptr.dtype.element_ty), mask=mask[:, None])


@triton.jit
def _norm_rotate_kernel(x_ptr, x_token_stride, out_ptr, out_token_stride, cos_ptr, sin_ptr, rows, heads, seq_len,
                        HALF: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    n1, n2, _, cos, sin, token, head, mask = _rows(x_ptr, x_token_stride, tl.program_id(0), rows, heads, seq_len,
                                                   cos_ptr, sin_ptr, HALF, BLOCK_ROWS)
    _store(out_ptr, out_token_stride, token, head, mask, n1 * cos + n2 * sin, n2 * cos - n1 * sin, HALF)


@triton.jit
def _norm_rotate_backward_kernel(grad_ptr, grad_token_stride, x_ptr, x_token_stride, out_ptr, out_token_stride,
                                 cos_ptr, sin_ptr, rows, heads, seq_len, HALF: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    n1, n2, r, cos, sin, token, head, mask = _rows(x_ptr, x_token_stride, tl.program_id(0), rows, heads, seq_len,
                                                   cos_ptr, sin_ptr, HALF, BLOCK_ROWS)
    cols = tl.arange(0, HALF)[None, :]
    first = grad_ptr + (token * grad_token_stride + head * (2 * HALF))[:, None] + cols
    g1 = tl.load(first, mask=mask[:, None], other=0.0).to(tl.float32)
    g2 = tl.load(first + HALF, mask=mask[:, None], other=0.0).to(tl.float32)
    d1 = g1 * cos - g2 * sin  # Rᵀ·∂y
    d2 = g2 * cos + g1 * sin
    dot = (tl.sum(d1 * n1, axis=1) + tl.sum(d2 * n2, axis=1)) / (2 * HALF)
    _store(out_ptr, out_token_stride, token, head, mask, r[:, None] * (d1 - n1 * dot[:, None]),
           r[:, None] * (d2 - n2 * dot[:, None]), HALF)


@triton.jit
def _v_backward_kernel(grad_ptr, grad_token_stride, out_ptr, out_token_stride, lamb_ptr, rows, heads,
                       MIXED: tl.constexpr, D: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    mask = row < rows
    token = (row // heads).to(tl.int64)
    head = row % heads
    cols = tl.arange(0, D)[None, :]
    grad = tl.load(grad_ptr + (token * grad_token_stride + head * D)[:, None] + cols, mask=mask[:, None], other=0.0)
    if MIXED:
        grad = grad.to(tl.float32) * (1 - tl.load(lamb_ptr))
    tl.store(out_ptr + (token * out_token_stride + head * D)[:, None] + cols, grad.to(out_ptr.dtype.element_ty),
             mask=mask[:, None])


def _token_stride(t: Tensor) -> int:
    """The token stride of a [B, T, heads, D] tensor whose heads lie contiguous within each token."""
    B, T, heads, D = t.shape
    if t.stride(3) != 1 or t.stride(2) != D or t.stride(0) != T * t.stride(1):
        raise ValueError(f"heads must lie contiguous within each token, tokens evenly spaced: strides {t.stride()}")
    return t.stride(1)


def _launch(kernel, *pointers_and_strides, qk: Tensor, cos: Tensor, sin: Tensor) -> None:
    B, T, heads, D = qk.shape
    rows = B * T * heads
    kernel[(triton.cdiv(rows, BLOCK_ROWS),)](*pointers_and_strides, cos, sin, rows, heads, T, HALF=D // 2,
                                             BLOCK_ROWS=BLOCK_ROWS, num_warps=NUM_WARPS)


def norm_rotate(qk: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``qk`` [B, T, heads, D] normed and rotated at positions 0 … T-1, in a new contiguous tensor."""
    out = torch.empty(qk.shape, dtype=qk.dtype, device=qk.device)
    _launch(_norm_rotate_kernel, qk, _token_stride(qk), out, out.stride(1), qk=qk, cos=cos.contiguous(),
            sin=sin.contiguous())
    return out


def norm_rotate_backward(grad: Tensor, qk: Tensor, cos: Tensor, sin: Tensor, out: Tensor) -> None:
    """∂qk into ``out`` (same shape as ``qk``; may be a slice of a larger tensor) from ``grad`` of the output."""
    _launch(_norm_rotate_backward_kernel, grad, _token_stride(grad), qk, _token_stride(qk), out, _token_stride(out),
            qk=qk, cos=cos.contiguous(), sin=sin.contiguous())


def v_backward(grad: Tensor, lamb: Tensor | None, out: Tensor) -> None:
    """∂V into ``out`` (V's slice of ``∂qkv``): ``grad·(1 − λ)``, or ``grad`` itself without a value embedding."""
    B, T, heads, D = grad.shape
    rows = B * T * heads
    _v_backward_kernel[(triton.cdiv(rows, BLOCK_ROWS),)](
        grad, _token_stride(grad), out, _token_stride(out), grad if lamb is None else lamb, rows, heads,
        MIXED=lamb is not None, D=D, BLOCK_ROWS=BLOCK_ROWS, num_warps=NUM_WARPS)
