"""Where one preset's cold compile goes (issue 18: `16gb` 198.5 s and `record-24gb` over 220 s, both in
micro-batches of 16,384 tokens, against 79-95 s for the other presets on 2026-11-26). It found the block mask's
sorts (Triton sorting networks, 35-70 s each to build); without them both compile in 46-52 s (session 10).

Runs the trainer's warm-up (every graph compiled) on inductor and Triton caches of its own, empty at the
start, then prints torch.compile's time per phase and the Triton kernels that took longest to build. Triton
writes each stage's file into its cache as the stage ends (source → ttir → ttgir → llir → ptx → cubin), so
the files' times give each kernel's time per stage; ptx → cubin is ptxas.

Usage (device, repo root): PYTHONPATH=src python benchmarks/compile_probe_gpu.py PRESET [--cap GIB] [key=value ...]
(under `timeout`, its SIGTERM ends the warm-up and the report covers what was built until then)
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

CACHES = Path(tempfile.mkdtemp(prefix="compile-probe-"))
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(CACHES / "inductor")
os.environ["TRITON_CACHE_DIR"] = str(CACHES / "triton")

import torch  # noqa: E402  (after the cache folders are set)

from cavegpt.config import build_config  # noqa: E402
from cavegpt.data.synthetic import bench_overrides  # noqa: E402
from cavegpt.train.trainer import Trainer  # noqa: E402

class Stopped(BaseException):  # not an Exception: torch.compile wraps those in errors of its own
    """SIGTERM (`timeout`'s signal) during the warm-up: report what was built until then."""


def _stop(signum, frame) -> None:
    raise Stopped


STAGES = (".ttir", ".ttgir", ".llir", ".ptx", ".cubin")


def kernel_build_times(triton_cache: Path) -> list[tuple[float, str, list[float]]]:
    """(seconds from the first file to the cubin, kernel name, seconds per stage) for every built kernel."""
    kernels = []
    for folder in (d for d in triton_cache.glob("*") if d.is_dir()):
        files = {f.suffix: f for f in folder.iterdir()}
        if ".cubin" not in files:
            continue
        times = {suffix: f.stat().st_mtime for suffix, f in files.items()}
        first = min(times.values())
        marks = [times.get(stage, first) for stage in STAGES]
        stages = [later - earlier for earlier, later in zip([first, *marks], marks)]
        kernels.append((times[".cubin"] - first, files[".cubin"].stem, stages))
    return sorted(kernels, reverse=True)


def main(synthetic_data: list[str]) -> None:
    signal.signal(signal.SIGTERM, _stop)
    args = sys.argv[1:]
    preset, cap = args.pop(0), None
    if "--cap" in args:
        at = args.index("--cap")
        cap = float(args[at + 1])
        del args[at:at + 2]
    if cap:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(cap * 2**30 / total, 0)
    config = build_config(preset, [*synthetic_data, *args])
    run, started = f"{preset} {' '.join(args)} (cap {cap or 'none'} GiB)", time.perf_counter()
    try:
        seconds = Trainer(config, echo=False).warmup()
        print(f"{run}: compile + warm-up {seconds:.1f} s")
    except Stopped:
        print(f"{run}: stopped after {time.perf_counter() - started:.1f} s of compile + warm-up; built by then:")
    print(torch._dynamo.utils.compile_times(repr="str"))
    kernels = kernel_build_times(CACHES / "triton")
    print(f"{len(kernels)} Triton kernels built; the slowest, seconds per stage "
          f"(to {' / '.join(s[1:] for s in STAGES)}):")
    for total, name, stages in kernels[:15]:
        print(f"  {total:7.1f} s  {' / '.join(f'{s:.1f}' for s in stages)}  {name[:90]}")


if __name__ == "__main__":
    with bench_overrides() as synthetic_data:
        main(synthetic_data)
