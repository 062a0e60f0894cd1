"""The fused LM head + soft cap + loss against the plain compiled path, at a seed micro-batch's shape, on the GPU.

Usage (device, repo root): PYTHONPATH=src python benchmarks/head_loss_gpu.py
(the row kernel's own settings are swept by benchmarks/head_rows_gpu.py)

For the seed (horizon 1, cap 30) and the record (horizons 3, cap 15): forward + backward time
(median of CUDA-event timings, triton.testing.do_bench), peak memory above the inputs, and the
agreement of the loss and both gradients with the plain path, over chunk sizes, with the row sums from the
row kernel or from the head matmul's epilogue (``sums_in_matmul``). Then the head's forward product of one
chunk alone: cuBLAS against the Triton matmul with that epilogue. Prints a table last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from cavegpt.model import epilogue_matmul_triton
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


def fused(x, weight, targets, weights, cap, chunk, sums_in_matmul):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        return fused_head_losses(x, weight, targets, weights, cap, chunk_tokens=chunk, sums_in_matmul=sums_in_matmul)


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
        for chunk, sums_in_matmul in ((8192, False), (8192, True), (16384, False), (16384, True)):
            ms, peak = measure(lambda: fused(x, weight, targets, weights, cap, chunk, sums_in_matmul), x, weight)
            x.grad = weight.grad = None
            loss, _ = fused(x, weight, targets, weights, cap, chunk, sums_in_matmul)
            loss.backward()
            errors = (f"loss {relative_error(loss.detach(), ref[0]):.1e}, grad x {relative_error(x.grad, ref[1]):.1e}, "
                      f"grad W {relative_error(weight.grad, ref[2]):.1e}")
            where = "matmul's epilogue" if sums_in_matmul else "row kernel"
            rows.append((name, f"fused, chunk {chunk}, row sums in the {where}", ms, peak, errors))
            print(rows[-1], flush=True)
    xb, wb = x.detach()[0, :8192].bfloat16(), weight.detach().bfloat16()
    epilogue_matmul_triton.softcap_logits_and_sums(xb, wb.T, 30.0)
    print("head matmul tile:", epilogue_matmul_triton.chosen_config(xb, wb.T, epilogue_matmul_triton.SOFTCAP_SUMS))
    with_sums = epilogue_matmul_triton.softcap_logits_and_sums
    for what, product in (("cuBLAS", lambda: xb @ wb.T), ("Triton + row sums", lambda: with_sums(xb, wb.T, 30.0))):
        rows.append(("one chunk", f"forward product [8192 × 768] · [768 × 50304], {what}",
                     do_bench(product, warmup=25, rep=200, return_mode="median"), 0.0, ""))
    print("\nhead | path | fwd+bwd ms | peak GiB | relative error vs plain")
    for row in rows:
        print(f"{row[0]} | {row[1]} | {row[2]:.3f} | {row[3]:.2f} | {row[4]}")


if __name__ == "__main__":
    main()
