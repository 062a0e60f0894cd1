"""The fused LM head + soft cap + loss against the plain compiled path, at a seed micro-batch's shape, on the GPU.

Usage (device, repo root): PYTHONPATH=src python benchmarks/head_loss_gpu.py [--quack]
(the row kernel's own settings are swept by benchmarks/head_rows_gpu.py)

For the seed (horizon 1, cap 30) and the record (horizons 3, cap 15): forward + backward time
(median of CUDA-event timings, triton.testing.do_bench), peak memory above the inputs, and the
agreement of the loss and both gradients with the plain path, over chunk sizes. With ``--quack`` (quack-kernels
installed, an sm_90 GPU) also the head on quack (its product with the soft cap in the epilogue, ``quack=True``) at
one chunk, and the pieces that differ alone: the product with and without the epilogue, the row kernel against the
rows' last kernel. Prints a table last.
"""

from __future__ import annotations

import sys

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


def fused(x, weight, targets, weights, cap, chunk, quack=False):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return fused_head_losses(x, weight, targets, weights, cap, chunk_tokens=chunk, quack=quack)


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


def pieces(x, w, targets, weights, cap, name) -> list[tuple]:
    """The parts of one chunk that differ between the two paths, each alone: (name, what, ms, 0, "")."""
    from cavegpt.model.head_loss import ahead_targets
    from cavegpt.model.head_loss_quack import softcapped_terms
    from cavegpt.model.head_loss_triton import triton_finish_rows, triton_rows_loss_and_grad
    ahead = ahead_targets(targets, weights.numel())
    coefs = weights / T
    logits = torch.empty(T, V, device="cuda", dtype=torch.bfloat16)
    row_sums = softcapped_terms(x, w, logits, cap)
    timings = {
        "product (cuBLAS)": lambda: torch.mm(x, w.T, out=logits),
        "product + soft cap epilogue (quack)": lambda: softcapped_terms(x, w, logits, cap),
        "row kernel": lambda: triton_rows_loss_and_grad(logits, ahead, coefs, cap, True),
        "rows' last kernel": lambda: triton_finish_rows(logits, row_sums, x, w, ahead, coefs, cap, True),
    }
    return [(name, what, do_bench(fn, warmup=25, rep=200, return_mode="median"), 0.0, "alone")
            for what, fn in timings.items()]


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
        paths = [(chunk, False) for chunk in (8192, 16384, 32768)] + ([(32768, True)] if "--quack" in sys.argv else [])
        for chunk, quack in paths:
            ms, peak = measure(lambda: fused(x, weight, targets, weights, cap, chunk, quack), x, weight)
            x.grad = weight.grad = None
            loss, _ = fused(x, weight, targets, weights, cap, chunk, quack)
            loss.backward()
            errors = (f"loss {relative_error(loss.detach(), ref[0]):.1e}, grad x {relative_error(x.grad, ref[1]):.1e}, "
                      f"grad W {relative_error(weight.grad, ref[2]):.1e}")
            rows.append((name, f"fused{', quack epilogue' if quack else ''}, chunk {chunk}", ms, peak, errors))
            print(rows[-1], flush=True)
        if "--quack" in sys.argv:
            rows += pieces(x.detach().bfloat16().view(T, D), weight.detach().bfloat16(), targets, weights, cap, name)
    print("\nhead | path | fwd+bwd ms | peak GiB | relative error vs plain")
    for row in rows:
        print(f"{row[0]} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]}")


if __name__ == "__main__":
    main()
