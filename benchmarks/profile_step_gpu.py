"""Where one optimizer step of a preset spends GPU time now: torch.profiler over 2 steps, kernels grouped by kind,
then the GPU's idle gaps between kernels (the host not keeping up), largest first, with the kernels around them,
then one more step's cuBLAS matmuls by shape with the rate each reaches. Every kernel is listed (longest first).

Usage (device, repo root): PYTHONPATH=src python benchmarks/profile_step_gpu.py PRESET [key=value ...]
(synthetic shards with FineWeb-like documents are written to a temp folder)
"""
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from cavegpt.config import build_config
from cavegpt.data.synthetic import bench_overrides
from cavegpt.train.trainer import Trainer

GROUPS = (("flash", "attention (FA4)"), ("flex", "attention (Flex)"), ("softcapped_ce", "head loss kernel"),
          ("relu_square", "fused MLP matmuls (Triton)"), ("norm_rotate", "Q/K norm + rotary (Triton)"),
          ("indexfunc", "embedding rows into .grad"),
          ("gemm", "matmul"), ("nvjet", "matmul"), ("cutlass", "matmul"), ("sm90", "matmul"),
          ("newton", "optimizer"), ("triton", "fused elementwise (inductor)"))


def steady_trainer(synthetic_data: list[str]) -> tuple[Trainer, int]:
    """A trainer of the command line's preset and overrides, compiled and two steps in at the final window, and the
    step to run as (the schedule's last). host_phases_gpu.py starts from here too."""
    config = build_config(sys.argv[1], [*synthetic_data, *sys.argv[2:]])
    trainer = Trainer(config, echo=False)
    trainer.warmup()
    trainer.set_window(1792)
    at = config.train.num_iterations - 1
    for _ in range(2):
        trainer.train_step(at)
    trainer.synchronize()
    return trainer, at


def main(synthetic_data: list[str]) -> None:
    trainer, at = steady_trainer(synthetic_data)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(2):
            trainer.train_step(at)
        trainer.synchronize()
    kernels = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in kernels)
    groups = defaultdict(float)
    for e in kernels:
        group = next((g for key, g in GROUPS if key in e.key.lower()), "other")
        groups[group] += e.device_time_total
    print(f"{sys.argv[1]}: GPU time per step {total / 2 / 1000:.1f} ms, {trainer.micro_batches_at(at)} micro-batches")
    for group, us in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<32} {us / 2 / 1000:8.1f} ms  {us / total:6.1%}")
    print("kernels, per step:")
    for e in sorted(kernels, key=lambda e: -e.device_time_total):
        print(f"  {e.device_time_total / 2 / 1000:8.2f} ms  {e.count // 2:5d}×  {e.key[:160]}")
    print_gaps(prof)
    print_matmul_shapes(trainer, at)


MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_mm"}


def print_matmul_shapes(trainer: Trainer, at: int) -> None:
    """cuBLAS's matmuls of one more step by shape, with the rate each reaches (the kernel list names tiles, not
    shapes): which products run far from the GPU's peak."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True, with_flops=True) as prof:
        trainer.train_step(at)
        trainer.synchronize()
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        matrices = [shape for shape in e.input_shapes if len(shape) in (2, 3)]
        if e.key not in MATMULS or len(matrices) < 2 or e.device_time_total <= 0:
            continue
        # the factors: addmm's come after the added matrix, and inductor's out= buffer comes last
        a, b = matrices[1:3] if e.key == "aten::addmm" and len(matrices) > 2 else matrices[:2]
        rows.append((e.device_time_total, e.count, e.key, a, b, e.flops / (e.device_time_total * 1e-6) / 1e12))
    print("matmuls by shape, one step (ms, calls, op, shapes, TFLOP/s):")
    for us, count, key, a, b, rate in sorted(rows, reverse=True):
        print(f"  {us / 1000:8.2f} ms  {count:5d}×  {key:<16} {str(list(a)):>18} · {str(list(b)):<18} {rate:6.0f}")


def print_gaps(prof) -> None:
    """The GPU's idle time between consecutive kernels, per step, and the 15 largest gaps."""
    launched = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                      key=lambda e: e.time_range.start)
    gaps = [(after.time_range.start - before.time_range.end, before.name, after.name)
            for before, after in zip(launched, launched[1:]) if after.time_range.start > before.time_range.end]
    span = launched[-1].time_range.end - launched[0].time_range.start
    print(f"GPU idle between kernels: {sum(g for g, _, _ in gaps) / 2 / 1000:.1f} ms per step "
          f"({len(gaps) // 2} gaps; {span / 2 / 1000:.1f} ms from first kernel to last, per step)")
    for gap, before, after in sorted(gaps, reverse=True)[:15]:
        print(f"  {gap / 1000:7.2f} ms  after {before[:60]}  before {after[:60]}")


if __name__ == "__main__":
    with bench_overrides() as synthetic_data:
        main(synthetic_data)
