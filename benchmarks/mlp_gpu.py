"""The fused ReLU² MLP against the plain compiled MLP, at a seed micro-batch's shape, on the GPU.

Usage (device, repo root): PYTHONPATH=src python benchmarks/mlp_gpu.py

Forward + backward of one layer's MLP on [32,768 tokens × 768] under bf16 autocast (median of CUDA-event
timings, triton.testing.do_bench): the plain path compiled as the model compiles it, the fused path
(autotuned tile), and cuBLAS alone on the two matmuls the kernels replace; the backward kernel also as it ran
before ``W_proj`` was read where it lies (a transposed copy made first, then read by rows of K). Then each tile
of ``relu_square_triton.CONFIGS`` and of ``CANDIDATES`` forced, forward and backward kernel alone. Prints a table
last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from cavegpt.model import relu_square_triton
from cavegpt.model.relu_square import relu_square_mlp

T, D = 32768, 768
# tiles beyond CONFIGS (BLOCK_M, BLOCK_N, stages, warps, epilogue parts, BLOCK_K, warp-specialized): session 18's
# eight more tiles were none faster (the backward 0.326 ms against cuBLAS's 0.239); here CONFIGS' tiles with the
# loads in a warp of their own, so that one tile's epilogue (it reads `post` and writes ∂h, 400 MB a call) overlaps
# the next tile's loads
CANDIDATES = [(128, 256, 3, 8, 1, 64, True), (128, 256, 3, 8, 2, 64, True), (128, 256, 2, 8, 2, 64, True),
              (128, 128, 4, 8, 1, 64, True), (128, 128, 3, 4, 1, 64, True), (128, 128, 4, 4, 1, 64, True)]


def plain(x, w_fc, w_proj):
    return F.linear(F.relu(F.linear(x, w_fc)).square(), w_proj)


def main() -> None:
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    x = torch.randn(T, D, device="cuda").requires_grad_()
    w_fc = (torch.randn(4 * D, D, device="cuda") * 0.02).requires_grad_()
    w_proj = (torch.randn(D, 4 * D, device="cuda") * 0.02).requires_grad_()
    grad_y = torch.randn(T, D, device="cuda", dtype=torch.bfloat16)
    rows = []

    for name, mlp in (("plain, compiled", torch.compile(plain)), ("fused, compiled", torch.compile(relu_square_mlp))):
        def step(mlp=mlp):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = mlp(x, w_fc, w_proj)
            y.backward(grad_y)
        step()
        rows.append((name, do_bench(step, warmup=25, rep=200, return_mode="median")))
    xb, fc, proj = x.detach().bfloat16(), w_fc.detach().bfloat16(), w_proj.detach().bfloat16()
    post = relu_square_triton.relu_square_matmul(xb, fc.T)
    relu_square_triton.relu_square_matmul(grad_y, proj, post)
    print("autotuned tiles: forward", relu_square_triton.chosen_config(xb, fc.T), "| backward",
          relu_square_triton.chosen_config(grad_y, proj, backward=True), flush=True)
    rows.append(("cuBLAS x·W_fcᵀ alone", do_bench(lambda: xb @ fc.T, warmup=25, rep=200, return_mode="median")))
    rows.append(("fused forward kernel", do_bench(lambda: relu_square_triton.relu_square_matmul(xb, fc.T),
                                                  warmup=25, rep=200, return_mode="median")))
    rows.append(("cuBLAS ∂y·W_proj alone", do_bench(lambda: grad_y @ proj, warmup=25, rep=200, return_mode="median")))
    rows.append(("fused backward kernel", do_bench(lambda: relu_square_triton.relu_square_matmul(grad_y, proj, post),
                                                   warmup=25, rep=200, return_mode="median")))
    rows.append(("fused backward kernel, W_proj transposed into a copy first", do_bench(
        lambda: relu_square_triton.relu_square_matmul(grad_y, proj.T.contiguous().T, post),
        warmup=25, rep=200, return_mode="median")))
    candidates = [relu_square_triton._config(*shape) for shape in CANDIDATES]
    for config in relu_square_triton.CONFIGS + candidates:
        for direction, args in (("fwd", (xb, fc.T)), ("bwd", (grad_y, proj, post))):
            try:
                ms = do_bench(lambda: relu_square_triton.relu_square_matmul(*args, config=config),
                              warmup=10, rep=100, return_mode="median")
            except Exception as error:  # a tile that does not fit shared memory is reported, not fatal
                print(f"{config} {direction}: {type(error).__name__}", flush=True)
                continue
            rows.append((f"{direction} {config}", ms))
            print(f"{direction} {config}: {ms:.3f} ms", flush=True)  # as it goes: a tile may crash the compiler

    print(f"\n{'what':<78} {'ms':>7}")
    for name, ms in rows:
        print(f"{name:<78} {ms:7.3f}")


if __name__ == "__main__":
    main()
