"""The FP8 head (``ModelConfig.head_fp8``) at a `seed` micro-batch's shape on the GPU: the forward product alone in bf16
and in FP8 (one scale per tensor, as the head uses them, and a scale per row; with and without fast accumulation),
the rounding of x and of W to e4m3, and the whole fused head forward + backward with and without FP8, with the losses'
largest difference. Median of CUDA-event timings (triton.testing.do_bench); the table comes last.

Usage (device, repo root): PYTHONPATH=src python benchmarks/head_fp8_gpu.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from cavegpt.model.head_loss import fused_head_losses, to_e4m3

T, D, V = 32768, 768, 50304


def timed(fn) -> float:
    return do_bench(fn, warmup=25, rep=200, return_mode="median")


def main() -> None:
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    x = F.rms_norm(torch.randn(T, D, device="cuda"), (D,)).bfloat16()
    weight = torch.randn(V, D, device="cuda") * 0.02
    w = weight.bfloat16()
    out = torch.empty(T, V, device="cuda", dtype=torch.bfloat16)
    (x8, x_scale), (w8, w_scale) = to_e4m3(x), to_e4m3(weight)
    x_scales, w_scales = x_scale.expand(T, 1).contiguous(), w_scale.expand(V, 1).contiguous()
    rows = []
    flops = 2 * T * D * V
    rows.append(("bf16 product (torch.mm, out=)", timed(lambda: torch.mm(x, w.T, out=out))))
    for fast in (False, True):
        rows.append((f"FP8 row-wise scales, fast accumulation {fast}", timed(lambda: torch._scaled_mm(
            x8, w8.T, scale_a=x_scales, scale_b=w_scales.T, out_dtype=torch.bfloat16, use_fast_accum=fast, out=out))))
        rows.append((f"FP8 one scale per tensor, fast accumulation {fast}", timed(lambda: torch._scaled_mm(
            x8, w8.T, scale_a=x_scale, scale_b=w_scale, out_dtype=torch.bfloat16, use_fast_accum=fast, out=out))))
    rows.append(("to_e4m3 of x [32768 × 768] bf16", timed(lambda: to_e4m3(x))))
    rows.append(("to_e4m3 of W [50304 × 768] float32", timed(lambda: to_e4m3(weight))))

    xg = x.float().view(1, T, D).requires_grad_()
    wg = weight.clone().requires_grad_()
    targets = torch.randint(0, 50257, (1, T), device="cuda")
    ones = torch.ones(1, device="cuda")
    losses = {}
    for fp8 in (False, True):
        def step():
            xg.grad = wg.grad = None
            with torch.autocast("cuda", dtype=torch.bfloat16):
                objective, losses[fp8] = fused_head_losses(xg, wg, targets, ones, 30.0, fp8=fp8)
            objective.backward()
        rows.append((f"whole fused head, forward + backward, fp8={fp8}", timed(step)))
    difference = (losses[True] - losses[False]).abs().max().item()

    print(f"the head's loss with FP8 − without: {difference:.2e} (loss {losses[False].item():.4f})")
    print("what | ms | TFLOP/s (products)")
    for name, ms in rows:
        rate = f"{flops / ms / 1e9:.0f}" if name.startswith(("bf16 product", "FP8")) else ""
        print(f"{name} | {ms:.3f} | {rate}")


if __name__ == "__main__":
    main()
