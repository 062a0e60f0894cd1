"""The head's row kernel alone, on one chunk of 8,192 rows of bf16 logits, over block and warps, with the
gradient and without (the losses alone).

Usage (device, repo root): PYTHONPATH=src python benchmarks/head_rows_gpu.py

Since session 22 the kernel reads each row once and, with the gradient, writes it once (before, a first pass read
the row for its sum and a second read it again to write the gradient: 1.047 ms per chunk at block 1024, 16 warps in
session 20, where a read + write of the chunk took 0.550 ms). Beside the kernel, the bandwidth the GPU reaches on
the same tensor: a read (a row sum) and a read + write (an in-place scale). Median of CUDA-event timings
(triton.testing.do_bench); GB/s counts 2 × the tensor's bytes for the kernel with the gradient, 1 × without.
Prints a table last.
"""

from __future__ import annotations

import torch
from triton.testing import do_bench

from cavegpt.model import head_loss_triton

ROWS, V, HORIZON, CAP = 8192, 50304, 3, 15.0


def main() -> None:
    torch.manual_seed(0)
    logits = (3 * torch.randn(ROWS, V, device="cuda")).to(torch.bfloat16)
    ahead = torch.randint(0, V, (ROWS, HORIZON), device="cuda")
    coefs = torch.tensor([1.0, 0.5, 0.25], device="cuda")
    gigabytes = logits.numel() * logits.element_size() / 1e9
    rows = []
    for name, fn, passes in (("read (row sums)", lambda: logits.sum(dim=1), 1),
                             ("read + write (in-place scale)", lambda: logits.mul_(1.0), 2)):
        ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
        rows.append((name, ms, 1000 * passes * gigabytes / ms))
    kept = head_loss_triton.BLOCK_SIZE, head_loss_triton.NUM_WARPS
    # stages are left at the module's setting: they changed nothing in sessions 13 and 19
    for block in (512, 1024, 2048, 4096):
        for warps in (4, 8, 16, 32):
            mark = " (kept)" if (block, warps) == kept else ""
            # with the gradient (a read and a write of each row), and the losses alone (a read)
            for with_grad, passes, what in ((True, 2, ""), (False, 1, ", losses alone")):
                source = logits.clone()

                def run() -> None:
                    head_loss_triton.triton_rows_loss_and_grad(source, ahead, coefs, CAP, with_grad,
                                                               block=block, num_warps=warps)
                name = f"kernel, block {block}, {warps} warps{mark}{what}"
                try:
                    ms = do_bench(run, warmup=25, rep=200, return_mode="median")
                except Exception as error:  # a config Triton cannot build (registers, shared memory)
                    rows.append((f"{name}: {type(error).__name__}", float("nan"), float("nan")))
                    continue
                rows.append((name, ms, 1000 * passes * gigabytes / ms))
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__} | {ROWS} × {V} bf16 logits, horizon {HORIZON}")
    print("what | ms | GB/s")
    for name, ms, rate in rows:
        print(f"{name} | {ms:.3f} | {rate:,.0f}")


if __name__ == "__main__":
    main()
