"""The fused LM head + soft cap + loss against the plain compiled path, at a seed micro-batch's shape, on the GPU.

Usage (device, repo root): PYTHONPATH=src python benchmarks/head_loss_gpu.py
(the row kernel's own settings are swept by benchmarks/head_rows_gpu.py)

For the seed (horizon 1, cap 30) and the record (horizons 3, cap 15): forward + backward time
(median of CUDA-event timings, triton.testing.do_bench), peak memory above the inputs, and the
agreement of the loss and both gradients with the plain path, over chunk sizes. Prints a table last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from cavegpt.model.gpt import ahead_losses
from cavegpt.model.head_loss import fused_head_losses

T, D, V = 32768, 768, 50304


def plain(x, weight, targets, weights, cap):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = cap * torch.tanh(F.linear(x, weight).float() / cap)
        if weights.numel() == 1:
            return F.cross_entropy(logits.view(-1, V), targets.reshape(-1)), None
        losses = ahead_losses(logits, targets, weights.numel())
        return losses @ weights, losses


def fused(x, weight, targets, weights, cap, chunk):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return fused_head_losses(x, weight, targets, weights, cap, chunk_tokens=chunk)


def measure(fn, x, weight) -> tuple[float, float]:
    """(median ms of forward + backward, peak GiB allocated above what was there)."""
    def step():
        x.grad = weight.grad = None
        fn()[0].backward()
    step()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return do_bench(step, warmup=50, rep=300, return_mode="median"), peak


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def main() -> None:
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    x = F.rms_norm(torch.randn(1, T, D, device="cuda"), (D,)).requires_grad_()  # the model's head input is normed
    weight = (torch.randn(V, D, device="cuda") * 0.02).requires_grad_()
    targets = torch.randint(0, 50257, (1, T), device="cuda")
    rows = []
    for name, weights, cap in (("seed", [1.0], 30.0), ("record", [1.0, 0.5, 0.25], 15.0)):
        weights = torch.tensor(weights, device="cuda")
        compiled = torch.compile(lambda: plain(x, weight, targets, weights, cap))
        ms, peak = measure(compiled, x, weight)
        rows.append((name, "plain, compiled", ms, peak, ""))
        x.grad = weight.grad = None
        reference = compiled()
        reference[0].backward()
        ref = (reference[0].detach(), x.grad.clone(), weight.grad.clone())
        for chunk in (8192, 16384, 32768):
            ms, peak = measure(lambda: fused(x, weight, targets, weights, cap, chunk), x, weight)
            x.grad = weight.grad = None
            loss, _ = fused(x, weight, targets, weights, cap, chunk)
            loss.backward()
            errors = (f"loss {relative_error(loss.detach(), ref[0]):.1e}, grad x {relative_error(x.grad, ref[1]):.1e}, "
                      f"grad W {relative_error(weight.grad, ref[2]):.1e}")
            rows.append((name, f"fused, chunk {chunk}", ms, peak, errors))
            print(rows[-1], flush=True)
    print("\nhead | path | fwd+bwd ms | peak GiB | relative error vs plain")
    for row in rows:
        print(f"{row[0]} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]}")


if __name__ == "__main__":
    main()
