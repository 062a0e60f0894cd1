"""The MLP ``y = relu(x · W_fcᵀ)² · W_projᵀ`` with ReLU² inside the matmuls (``ModelConfig.fused_mlp``).

The plain path runs the first matmul, then a kernel that squares its output, and in the backward
pass a matmul for ``∂post`` and a kernel that turns it into ``∂h``: each of those elementwise kernels
moves whole ``[tokens, 4·d]`` tensors through memory (63 ms of a 1.16 s seed step on an H100,
docs/BENCHMARKS.md). Here

* forward: ``post = relu(x · W_fcᵀ)²`` comes out of the first matmul, squared in its epilogue;
  ``y = post · W_projᵀ``;
* backward: ``∂h = (∂y · W_proj) · 2·sqrt(post)`` comes out of one matmul, since
  d relu(h)²/dh = 2·relu(h) = 2·sqrt(post); then ``∂W_fc = ∂hᵀ · x``, ``∂x = ∂h · W_fc`` and
  ``∂W_proj = ∂yᵀ · post`` are plain matmuls.

Only ``post`` is kept for the backward pass (the plain path keeps ``h`` and more: on an H100 a seed
micro-batch peaks 2.25 GiB lower). On CUDA GPUs of sm_90 and newer with 16-bit operands the two fused
matmuls are Triton kernels (:mod:`cavegpt.model.relu_square_triton`, TMA), or quack's GEMMs on sm_90 where
quack is installed and the model asks for them (:mod:`cavegpt.model.relu_square_quack`,
:func:`cavegpt.model.quack_gemms.quack_runs_on`);
on the CPU the same arithmetic runs in PyTorch (the tests' path); older GPUs keep the plain MLP
(:func:`fused_mlp_runs_on`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from cavegpt.model.quack_gemms import quack_runs_on


def fused_mlp_runs_on(device: torch.device) -> bool:
    """CUDA GPUs of sm_90 and newer (the Triton kernels), and the CPU (the same arithmetic in PyTorch);
    on older GPUs a fused MLP without the kernels would only be slower than the plain one. (Called inside
    the compiled forward: torch.compile folds ``get_device_properties`` to a constant, not
    ``get_device_capability``.)"""
    return device.type != "cuda" or torch.cuda.get_device_properties(device).major >= 9


def _triton_applies(t: Tensor) -> bool:
    return t.is_cuda and t.dtype in (torch.bfloat16, torch.float16) and fused_mlp_runs_on(t.device)


@torch.library.custom_op("cavegpt::relu_square_up", mutates_args=())
def _relu_square_up(x: Tensor, w_fc: Tensor, quack: bool) -> Tensor:
    """``relu(x · W_fcᵀ)²`` for ``x`` [M, d], ``W_fc`` [4d, d]; ``quack``: quack's GEMM where it runs, else Triton's."""
    if _triton_applies(x):
        if quack and quack_runs_on(x.device):
            from cavegpt.model.relu_square_quack import relu_square_up
            return relu_square_up(x, w_fc)
        from cavegpt.model.relu_square_triton import relu_square_matmul
        return relu_square_matmul(x, w_fc.T)
    return torch.relu(x @ w_fc.T).square()


@_relu_square_up.register_fake
def _(x, w_fc, quack):
    return x.new_empty(x.size(0), w_fc.size(0))


@torch.library.custom_op("cavegpt::relu_square_up_backward", mutates_args=())
def _relu_square_up_backward(grad_y: Tensor, w_proj: Tensor, post: Tensor, quack: bool) -> Tensor:
    """``∂h = (∂y · W_proj) · 2·sqrt(post)`` for ``∂y`` [M, d], ``W_proj`` [d, 4d], ``post`` [M, 4d]."""
    if _triton_applies(grad_y):
        if quack and quack_runs_on(grad_y.device):
            from cavegpt.model.relu_square_quack import relu_square_up_backward
            return relu_square_up_backward(grad_y, w_proj, post)
        from cavegpt.model.relu_square_triton import relu_square_matmul
        return relu_square_matmul(grad_y, w_proj, post)
    return (grad_y @ w_proj) * (2 * post.sqrt())


@_relu_square_up_backward.register_fake
def _(grad_y, w_proj, post, quack):
    return torch.empty_like(post)


class _ReluSquareMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w_fc: Tensor, w_proj: Tensor, quack: bool) -> Tensor:
        post = torch.ops.cavegpt.relu_square_up(x, w_fc, quack)
        ctx.save_for_backward(x, w_fc, w_proj, post)
        ctx.quack = quack
        return post @ w_proj.T

    @staticmethod
    def backward(ctx, grad_y: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        x, w_fc, w_proj, post = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        grad_h = torch.ops.cavegpt.relu_square_up_backward(grad_y, w_proj, post, ctx.quack)
        return grad_h @ w_fc, grad_h.T @ x, grad_y.T @ post, None


def relu_square_mlp(x: Tensor, w_fc: Tensor, w_proj: Tensor, quack: bool = False) -> Tensor:
    """``relu(x · W_fcᵀ)² · W_projᵀ`` for ``x`` [..., d]; under autocast the matmuls run in its dtype, as
    ``nn.Linear``'s would. ``quack``: where quack runs, the two fused products are quack's GEMMs
    (:mod:`cavegpt.model.relu_square_quack`), not Triton's."""
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, w_fc, w_proj = x.to(dtype), w_fc.to(dtype), w_proj.to(dtype)
    flat = x.reshape(-1, x.size(-1)).contiguous()
    return _ReluSquareMLP.apply(flat, w_fc.contiguous(), w_proj.contiguous(), quack).view(*x.shape[:-1], w_proj.size(0))
