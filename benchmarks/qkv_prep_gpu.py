"""Attention's inputs at `seed`'s shape (32,768 tokens, Q/K/V of 6 heads of 128): the prep op's Q/K kernels over
block sizes and warps, beside inductor's compiled plain path, forward and backward, with the bandwidth each reaches.

Usage (device, repo root): PYTHONPATH=src python benchmarks/qkv_prep_gpu.py
"""
import itertools

import torch
from triton.testing import do_bench

import cavegpt.model.qkv_prep_triton as kernels
from cavegpt.model.gpt import Rotary, prepare_plain
from cavegpt.model.qkv_prep import prepare_qkv

TOKENS, HEADS, D = 32768, 6, 128
PEAK_TB_S = 3.35  # H100 SXM HBM3, the datasheet's


def plain(qkv, rotary, value_embed, lamb):
    return tuple(t.bfloat16() for t in prepare_plain(*qkv.split(HEADS, dim=2), rotary, value_embed, lamb))


def main() -> None:
    torch.manual_seed(0)
    qkv = torch.randn(1, TOKENS, 3 * HEADS, D, device="cuda").bfloat16().requires_grad_()
    embed = torch.randn(1, TOKENS, HEADS * D, device="cuda").requires_grad_()
    lamb = torch.tensor(0.5, device="cuda", requires_grad=True)
    rotary = Rotary(D, 65536).cuda()
    grads = [torch.randn(1, TOKENS, HEADS, D, device="cuda").bfloat16() for _ in range(3)]
    qk_bytes = 2 * TOKENS * 2 * HEADS * D  # Q and K once, bf16
    print(f"Q/K: {qk_bytes / 1e6:.0f} MB each way; forward moves 2×, backward 3× (read ∂y and x, write ∂x)")
    print(f"{'Q/K kernels':<28} {'forward ms':>10} {'GB/s':>7} {'backward ms':>11} {'GB/s':>7}")
    qk = qkv.detach()[:, :, :2 * HEADS]
    grad_qk = torch.randn(1, TOKENS, 2 * HEADS, D, device="cuda").bfloat16()
    out = torch.empty_like(qkv.detach())[:, :, :2 * HEADS]
    for block, warps in itertools.product((8, 16, 32, 64, 128), (2, 4, 8)):
        kernels.BLOCK_ROWS, kernels.NUM_WARPS = block, warps
        forward = do_bench(lambda: kernels.norm_rotate(qk, rotary.cos, rotary.sin))
        backward = do_bench(lambda: kernels.norm_rotate_backward(grad_qk, qk, rotary.cos, rotary.sin, out=out))
        print(f"  rows {block:3d}, warps {warps}{'':<12} {forward:10.3f} {2 * qk_bytes / forward / 1e6:7.0f} "
              f"{backward:11.3f} {3 * qk_bytes / backward / 1e6:7.0f}")
    print(f"(the H100's bandwidth: {PEAK_TB_S * 1e3:.0f} GB/s)")
    print(f"{'whole prep, compiled':<28} {'forward ms':>10} {'':>7} {'fwd+bwd ms':>11}")
    for name, prep in (("inductor, plain path", lambda *a: plain(qkv, rotary, *a)),
                       ("prep op", lambda *a: prepare_qkv(qkv, rotary.cos, rotary.sin, *a))):
        compiled = torch.compile(prep)
        for with_embed in (True, False):
            args = (embed, lamb) if with_embed else (None, None)
            leaves = [qkv, embed, lamb] if with_embed else [qkv]
            forward = do_bench(lambda: compiled(*args))
            both = do_bench(lambda: torch.autograd.grad(compiled(*args), leaves, grads))
            label = f"{name}, {'with' if with_embed else 'no'} ve"
            print(f"  {label:<26} {forward:10.3f} {'':>7} {both:11.3f}")


if __name__ == "__main__":
    main()
