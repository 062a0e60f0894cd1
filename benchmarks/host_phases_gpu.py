"""What each phase of a training step costs the host (Python, dispatch, kernel launches) beside its time to
finish on the GPU: where the GPU's idle gaps between kernels come from (39 ms a `seed` step in session 16). Also
how often a real step makes the caching allocator go back to the driver (``cudaMalloc``/``cudaFree``, which wait).

Each wrapped phase starts on an idle GPU (a synchronize before it), so its host time is launch work alone, never
a wait on a full launch queue; a second synchronize after it gives host + GPU time. A phase whose host time is close
to its total is bound by the host: the GPU finishes its kernels as fast as they come. (The synchronizes remove the
overlap between phases, so the totals add up to more than a real step.)

Usage (device, repo root): PYTHONPATH=src python benchmarks/host_phases_gpu.py PRESET [key=value ...]
(synthetic shards with FineWeb-like documents are written to a temp folder)
"""
import sys
import time
from collections import defaultdict

import torch

import cavegpt.train.trainer as trainer_module
from cavegpt.data.synthetic import bench_overrides
from profile_step_gpu import steady_trainer

STEPS = 3
synchronize = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None  # (the CPU: a dry run)
host_s: dict[str, float] = defaultdict(float)
total_s: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)


def timed(name: str, fn):
    def run(*args, **kwargs):
        synchronize()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        host_s[name] += time.perf_counter() - start
        synchronize()
        total_s[name] += time.perf_counter() - start
        calls[name] += 1
        return result
    return run


def main(synthetic_data: list[str]) -> None:
    trainer, at = steady_trainer(synthetic_data)
    before = allocator_counts()
    start = time.perf_counter()
    for _ in range(STEPS):
        trainer.train_step(at)
    synchronize()
    step_ms = (time.perf_counter() - start) / STEPS * 1e3
    churn = {key: (count - before[key]) / STEPS for key, count in allocator_counts().items()}
    trainer.train_stream.next_batch = timed("next batch (loader, copies to the GPU)", trainer.train_stream.next_batch)
    trainer.model.look_up = timed("embedding rows (look_up)", trainer.model.look_up)
    trainer.forward = timed("compiled forward", trainer.forward)
    trainer_module.accumulate_gradients = timed("backward + sums into .grad", trainer_module.accumulate_gradients)
    trainer.optimizers.step = timed("optimizer step", trainer.optimizers.step)
    for _ in range(STEPS):
        trainer.train_step(at)
    print(f"{sys.argv[1]}: a step takes {step_ms:.1f} ms unsynchronized; per step, {trainer.micro_batches_at(at)} "
          "micro-batches, each phase below from an idle GPU")
    print(f"  {'phase':<42} {'calls':>5} {'host ms':>9} {'host+GPU ms':>12} {'host share':>10}")
    for name in total_s:
        print(f"  {name:<42} {calls[name] // STEPS:5d} {host_s[name] / STEPS * 1e3:9.2f} "
              f"{total_s[name] / STEPS * 1e3:12.2f} {host_s[name] / total_s[name]:10.1%}")
    print("  the caching allocator per unsynchronized step (a retry frees cached blocks and waits for the GPU): "
          + ", ".join(f"{key} {count:g}" for key, count in churn.items()))
    trainer.close()


def allocator_counts() -> dict[str, int]:
    if not torch.cuda.is_available():
        return {}
    stats = torch.cuda.memory_stats()
    return {key: stats.get(key, 0) for key in ("num_alloc_retries", "num_device_alloc", "num_device_free")}


if __name__ == "__main__":
    with bench_overrides() as synthetic_data:
        main(synthetic_data)
