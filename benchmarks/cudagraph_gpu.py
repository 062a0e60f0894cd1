"""Issue 16's CUDA-graph lever, measured before it is built into the trainer: inductor's CUDA graphs over the
compiled forward and backward, with every .grad allocated once and zeroed in place (a graph's outputs are
overwritten by its next replay, so gradient accumulation must add into memory the graphs do not own).

Prints the first losses (to compare on against off: the same data and initial weights) and the bench line.
Usage (device, repo root): PYTHONPATH=src python benchmarks/cudagraph_gpu.py on|off PRESET [key=value ...]
"""
import sys

import torch

from cavegpt.config import build_config
from cavegpt.data.synthetic import bench_overrides
from cavegpt.optim.optimizers import Optimizers
from cavegpt.report.bench import bench_window
from cavegpt.train.trainer import Trainer

WINDOW, STEPS = 1792, 10


def zero_in_place(self: Optimizers) -> None:
    for optimizer in self.by_name.values():
        optimizer.zero_grad(set_to_none=False)


def main() -> None:
    mode, preset, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
    graphs = mode == "on"
    if graphs:
        torch._inductor.config.triton.cudagraphs = True
        Optimizers.zero_grad = zero_in_place
    config = build_config(preset, [*bench_overrides(), *overrides])
    trainer = Trainer(config, echo=False)
    seconds = trainer.warmup()
    if graphs:
        for p in trainer.model.parameters():
            p.grad = torch.zeros_like(p)
    trainer.set_window(WINDOW)
    at = config.train.num_iterations - 1
    learning = config.train.num_iterations // 2  # the last step's learning rate is 0: no change to compare
    losses = [trainer.train_step(learning).item() for _ in range(4)]
    result = bench_window(trainer, WINDOW, STEPS, warmup_steps=0, at_step=at)
    print(f"cudagraphs {mode}: {preset} {' '.join(overrides)} | warm-up {seconds:.1f}s | first losses "
          + " ".join(f"{x:.5f}" for x in losses)
          + f" | {result.tokens_per_second:,.0f} tok/s | {result.seconds / STEPS:.3f} s/step | "
            f"peak {result.peak_memory_gib:.2f} GiB")


if __name__ == "__main__":
    main()
