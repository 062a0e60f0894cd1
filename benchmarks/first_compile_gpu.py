"""Where the first torch.compile on a fresh machine spends its time (issue 18: 187-191 s for any preset's first
compile on a machine, 53-92 s for the cold compiles after it).

Usage (device, repo root, before anything else has imported torch there):
    python benchmarks/first_compile_gpu.py LABEL    (run it twice: the second run finds the machine warm)
Each run uses inductor and Triton caches of its own, empty at its start, and prints one line per phase:
importing torch, the CUDA context, importing inductor, a first compiled one-op function, a second one.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

caches = tempfile.mkdtemp(prefix="first-compile-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = f"{caches}/inductor"
os.environ["TRITON_CACHE_DIR"] = f"{caches}/triton"
phases: list[tuple[str, float]] = []
start = time.perf_counter()


def done(phase: str) -> None:
    global start
    phases.append((phase, time.perf_counter() - start))
    start = time.perf_counter()


import torch  # noqa: E402  (timed)

done("import torch")
torch.ones(1, device="cuda")
torch.cuda.synchronize()
done("CUDA context")
import torch._inductor.compile_fx  # noqa: E402,F401  (timed)

done("import inductor")
first = torch.compile(lambda x: torch.relu(x) * 2)
first(torch.ones(8, device="cuda"))
torch.cuda.synchronize()
done("first compiled one-op function")
second = torch.compile(lambda x: torch.sigmoid(x) + 1)
second(torch.ones(8, device="cuda"))
torch.cuda.synchronize()
done("second compiled one-op function")
label = sys.argv[1] if len(sys.argv) > 1 else "run"
print(f"{label}: " + " | ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases), flush=True)
