"""Quack's CuTe-DSL GEMMs (the ``quack-kernels`` package that FlashAttention-4 installs) against cuBLAS and cavegpt's
Triton ReLU² kernels, at a `seed` micro-batch's shapes (32,768 tokens): the ReLU² MLP's forward and backward products,
the head's forward product, Q/K/V's and the projections' products. Quack picks its tile by its own autotuner
(``tuned=True``); its pick and how long the first call took are printed. Each row checks its result against cuBLAS's
(largest |Δ| over the largest |value|). Median of CUDA-event timings (triton.testing.do_bench); the table comes last.

Usage (device, repo root, with FA4's wheels on PYTHONPATH): PYTHONPATH=src:... python benchmarks/quack_gemm_gpu.py
"""

from __future__ import annotations

import os
import time
import traceback

import torch
from triton.testing import do_bench

from cavegpt.model.relu_square_triton import relu_square_matmul

os.environ.setdefault("QUACK_PRINT_AUTOTUNING", "1")
T, D, V = 32768, 768, 50304
rows: list[tuple[str, float, float, str]] = []  # what, ms, TFLOP/s, check


def timed(fn) -> float:
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def relative_error(got: torch.Tensor, want: torch.Tensor) -> str:
    return f"{((got.float() - want.float()).abs().max() / want.float().abs().max()).item():.1e}"


def measure(name: str, flops: float, fn, want: torch.Tensor | None = None) -> None:
    """One row: the first call (quack compiles and tunes there), then the timing."""
    try:
        start = time.perf_counter()
        got = fn()
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        check = relative_error(got, want) if want is not None else "-"
        ms = timed(fn)
        rows.append((name, ms, flops / ms / 1e9, f"{check} (first call {first:.1f} s)"))
        print(f"{name}: {ms:.3f} ms, first call {first:.1f} s, check {check}", flush=True)
    except Exception as error:  # a probe: one failing kernel must not hide the others
        traceback.print_exc()
        rows.append((name, float("nan"), float("nan"), f"failed: {type(error).__name__}"))


def main() -> None:
    from quack.gemm_interface import gemm, gemm_act, gemm_dact

    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    bf16 = dict(device="cuda", dtype=torch.bfloat16)
    x = torch.randn(T, D, **bf16)
    w_fc = torch.randn(4 * D, D, **bf16) * 0.02  # nn.Linear layout: [out, in]
    w_proj = torch.randn(D, 4 * D, **bf16) * 0.02
    dy = torch.randn(T, D, **bf16)
    w_qkv = torch.randn(3 * D, D, **bf16) * 0.02
    w_out = torch.randn(D, D, **bf16) * 0.02
    w_head = torch.randn(V, D, **bf16) * 0.02

    up = 2 * T * D * 4 * D
    h = x @ w_fc.T
    post = torch.relu(h).square()
    measure("MLP up, cuBLAS x·W_fcᵀ (no ReLU²)", up, lambda: x @ w_fc.T, h)
    measure("MLP up, quack gemm (no ReLU²)", up, lambda: gemm(x, w_fc.T), h)
    measure("MLP up + ReLU², cavegpt Triton", up, lambda: relu_square_matmul(x, w_fc.T), post)
    measure("MLP up + ReLU², quack gemm_act, post only", up,
            lambda: gemm_act(x, w_fc.T, activation="relu_sq", store_preact=False)[1], post)
    measure("MLP up + ReLU², quack gemm_act, h and post", up,
            lambda: gemm_act(x, w_fc.T, activation="relu_sq")[1], post)

    d_post = dy @ w_proj
    d_h = d_post * 2 * torch.relu(h)
    measure("MLP ∂post, cuBLAS ∂y·W_proj (no ReLU²')", up, lambda: dy @ w_proj, d_post)
    measure("MLP ∂post, quack gemm (no ReLU²')", up, lambda: gemm(dy, w_proj), d_post)
    measure("MLP ∂h from post, cavegpt Triton", up, lambda: relu_square_matmul(dy, w_proj, post), d_h)
    measure("MLP ∂h from h (+ post again), quack gemm_dact", up,
            lambda: gemm_dact(dy, w_proj, h, activation="relu_sq")[0], d_h)

    for name, a, b, flops in (
            ("head forward [32768×768]·[768×50304]", x, w_head.T, 2 * T * D * V),
            ("Q/K/V [32768×768]·[768×2304]", x, w_qkv.T, 2 * T * D * 3 * D),
            ("attention out [32768×768]·[768×768]", x, w_out.T, 2 * T * D * D),
            ("MLP down [32768×3072]·[3072×768]", post, w_proj.T, up),
            ("Q/K/V ∂x [32768×2304]·[2304×768]", torch.randn(T, 3 * D, **bf16), w_qkv, 2 * T * D * 3 * D),
            ("∂W_fc [3072×32768]·[32768×768]", d_h.T, x, up)):
        want = a @ b
        measure(f"{name}, cuBLAS", flops, lambda: a @ b, want)
        measure(f"{name}, quack gemm", flops, lambda: gemm(a, b), want)
        del want

    print("what | ms | TFLOP/s | check against cuBLAS")
    for name, ms, rate, check in rows:
        print(f"{name} | {ms:.3f} | {rate:.0f} | {check}")


if __name__ == "__main__":
    main()
