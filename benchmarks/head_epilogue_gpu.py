"""Where the time of the head's product with the soft cap in its epilogue goes (cavegpt.model.head_loss_quack): the
[32,768 × 768] · [768 × 50,304] product of a `seed` micro-batch with quack, with epilogues that each do part of the
work, and with other tiles. Session 25's first build (the row kernel's three special-function instructions: σ by a
reciprocal) took 5.62 ms in the head against 3.99 for cuBLAS's bare product.

Rows: cuBLAS's and quack's bare product (quack's own tuned tile); at the kept tile (128 × 192, ping-pong, cluster
2 × 1) the bare product, the row sums alone, the first build's arithmetic alone and whole; the kept epilogue
(tanh.approx, two special-function instructions) at that tile and others. Median of CUDA-event timings
(triton.testing.do_bench); the table comes last.

Usage (device, repo root, with FA4's wheels on PYTHONPATH): PYTHONPATH=src:... python benchmarks/head_epilogue_gpu.py
"""

from __future__ import annotations

import time
import traceback

import cutlass.cute as cute
import torch
from quack.epilogue.frontend import gemm_epilogue
from quack.epilogue.ops import ColVecReduce
from triton.testing import do_bench

from cavegpt.model.head_loss_quack import LOG2E, _softcapped_terms

T, D, V, CAP = 32768, 768, 50304, 30.0
rows: list[tuple[str, float]] = []


@gemm_epilogue()
def _bare(acc):
    return {"D": acc}


@gemm_epilogue(reduces={"row_sums": ColVecReduce("row_sums")})
def _sums_only(acc):
    return {"D": acc, "row_sums": acc}


@gemm_epilogue()
def _arithmetic_only(acc, scale, span):
    e = cute.math.exp2(cute.arch.fmin(acc * scale, 64.0), fastmath=True)
    sigma = cute.arch.rcp_approx(1.0 + e)
    terms = cute.math.exp2(span * sigma - span, fastmath=True)
    return {"D": terms * 4.0 * e * sigma * sigma}


@gemm_epilogue(reduces={"row_sums": ColVecReduce("row_sums")})
def _reciprocal_terms(acc, scale, span):
    e = cute.math.exp2(cute.arch.fmin(acc * scale, 64.0), fastmath=True)
    sigma = cute.arch.rcp_approx(1.0 + e)
    terms = cute.math.exp2(span * sigma - span, fastmath=True)
    return {"D": terms * 4.0 * e * sigma * sigma, "row_sums": terms}


def measure(name: str, fn) -> None:
    try:
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        ms = do_bench(fn, warmup=25, rep=200, return_mode="median")
        rows.append((f"{name} (first call {first:.1f} s)", ms))
        print(f"{name}: {ms:.3f} ms, first call {first:.1f} s", flush=True)
    except Exception:  # a probe: one failing variant must not hide the others
        traceback.print_exc()
        rows.append((f"{name}: failed", float("nan")))


def main() -> None:
    from quack.gemm_interface import gemm

    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    x = torch.nn.functional.rms_norm(torch.randn(T, D, device="cuda"), (D,)).bfloat16()
    w = (torch.randn(V, D, device="cuda") * 0.05).bfloat16()
    out = torch.empty(T, V, device="cuda", dtype=torch.bfloat16)
    scale, span = -2 * LOG2E / CAP, 2 * LOG2E * CAP

    def sums(tile_n: int) -> torch.Tensor:
        return torch.empty(T, V // tile_n, device="cuda", dtype=torch.float32)

    def run(mod, tile_n=192, pingpong=True, cluster=(2, 1), tile_m=128, **epi_args):
        return lambda: mod.gemm(x, w, out, epi_args=epi_args, tile_M=tile_m, tile_N=tile_n, cluster_M=cluster[0],
                                cluster_N=cluster[1], pingpong=pingpong)

    measure("cuBLAS bare product", lambda: torch.mm(x, w.T, out=out))
    measure("quack bare product, its tuned tile", lambda: gemm(x, w.T, out=out))
    measure("bare product, 128x192 ping-pong", run(_bare))
    measure("row sums only", run(_sums_only, row_sums=sums(192)))
    measure("first build's arithmetic only (3 MUFU)", run(_arithmetic_only, scale=scale, span=span))
    measure("first build (3 MUFU)", run(_reciprocal_terms, scale=scale, span=span, row_sums=sums(192)))
    kept = dict(inv_cap=1 / CAP, span=LOG2E * CAP)
    measure("kept epilogue (tanh.approx, 2 MUFU)", run(_softcapped_terms, **kept, row_sums=sums(192)))
    measure("kept epilogue, 128x128 ping-pong", run(_softcapped_terms, tile_n=128, **kept, row_sums=sums(128)))
    measure("kept epilogue, cluster 1x1", run(_softcapped_terms, cluster=(1, 1), **kept, row_sums=sums(192)))
    measure("kept epilogue, cluster 1x2", run(_softcapped_terms, cluster=(1, 2), **kept, row_sums=sums(192)))
    print("\nproduct | ms")
    for name, ms in rows:
        print(f"{name} | {ms:.3f}")


if __name__ == "__main__":
    main()
