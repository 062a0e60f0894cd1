"""FlashAttention-4 for packed documents: ``flash-attn-4``'s variable-length kernels as two custom ops.

Installed with ``pip install "cavegpt[fa4]"`` (PyPI ``flash-attn-4``, CuTe DSL kernels compiled at
first use). Each document of the flattened batch is one sequence of ``cu_seqlens``; causal with a
left window of ``window - 1`` keys is the mask rule of :mod:`cavegpt.model.masks` (``q − k <
window``, same document, causal).

The kernels are wrapped as opaque custom ops, forward and backward, so ``torch.compile`` calls them
as they are instead of tracing into the CuTe DSL. FA4 takes the window and the documents' count
and longest length as host integers at launch: they arrive in CPU tensors, so a new window or a
new batch changes data, not the compiled graph, and reading them needs no GPU sync.

Cards: FA4 has kernels for sm_90 (Hopper: H100, H200), sm_100/sm_110 (datacenter Blackwell) and,
for part of its features, sm_120 (consumer Blackwell); cavegpt has measured sm_90 only
(docs/BENCHMARKS.md). ``auto`` takes it on sm_90 and sm_100; Ampere and Ada (RTX 3090, 4090) have
no FA4 backward and keep FlexAttention.
"""

from __future__ import annotations

import importlib.util
import warnings

import torch
from torch import Tensor

from cavegpt.model.attention import Documents

AUTO_CAPABILITIES = (9, 10)  # compute capability majors auto picks FA4 on
# printed by the CuTe DSL at each kernel compile about an argument of FA4's own; nothing a user can act on
warnings.filterwarnings("ignore", message="Argument aux_data .* cannot be converted to a JitArgument",
                        category=UserWarning)


def fa4_unavailable(device: torch.device) -> str | None:
    """Why FA4 cannot run on ``device`` (None: it can)."""
    if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
        return 'flash-attn-4 is not installed (pip install "cavegpt[fa4]")'
    major, minor = torch.cuda.get_device_capability(device)
    if major not in AUTO_CAPABILITIES:
        return f"FA4's training kernels need sm_90 or sm_100; this GPU is sm_{major}{minor}"
    return None


def _launch_arguments(cu_seqlens: Tensor, sizes: Tensor, window: Tensor) -> dict:
    count, longest = sizes.tolist()
    cu = cu_seqlens[:count + 1]
    return dict(cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest, max_seqlen_k=longest,
                causal=True, window_size_left=int(window) - 1, window_size_right=0)


@torch.library.custom_op("cavegpt::fa4_forward", mutates_args=())
def _fa4_forward(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, sizes: Tensor,
                 window: Tensor) -> tuple[Tensor, Tensor]:
    from flash_attn.cute.interface import _flash_attn_fwd
    out, lse, *_ = _flash_attn_fwd(q, k, v, return_lse=True, **_launch_arguments(cu_seqlens, sizes, window))
    return out, lse


@_fa4_forward.register_fake
def _(q, k, v, cu_seqlens, sizes, window):
    return q.new_empty(q.shape), q.new_empty((q.size(1), q.size(0)), dtype=torch.float32)  # FA4's own: contiguous


@torch.library.custom_op("cavegpt::fa4_backward", mutates_args=())
def _fa4_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, cu_seqlens: Tensor,
                  sizes: Tensor, window: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    from flash_attn.cute.interface import _flash_attn_bwd
    dq, dk, dv = _flash_attn_bwd(q, k, v, out, grad_out, lse, **_launch_arguments(cu_seqlens, sizes, window))
    return dq, dk, dv


@_fa4_backward.register_fake
def _(grad_out, q, k, v, out, lse, cu_seqlens, sizes, window):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)  # as FA4 allocates them


def _save(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:3], *output, *inputs[3:])


def _differentiate(ctx, grad_out: Tensor, _grad_lse: Tensor):
    q, k, v, out, lse, cu_seqlens, sizes, window = ctx.saved_tensors
    dq, dk, dv = torch.ops.cavegpt.fa4_backward(grad_out.contiguous(), q, k, v, out, lse, cu_seqlens, sizes, window)
    return dq, dk, dv, None, None, None


_fa4_forward.register_autograd(_differentiate, setup_context=_save)


def fa4_attention(q: Tensor, k: Tensor, v: Tensor, documents: Documents, window: Tensor) -> Tensor:
    """Attention of ``[B, T, H, D]`` q, k, v over ``documents``; ``window`` is a 0-d CPU tensor."""
    B, T, H, D = q.shape
    # no copies: FA4 reads strided rows (V may be a view into the joined Q/K/V product) and copies only what its
    # alignment rules refuse
    flat = [t.reshape(B * T, H, D) for t in (q, k, v)]
    out, _ = torch.ops.cavegpt.fa4_forward(*flat, documents.cu_seqlens, documents.sizes, window)
    return out.view(B, T, H, D)
