"""Issue 16's levers on the whole training step, measured before one is built into the trainer:

* ``cudagraphs``: inductor's CUDA graphs over the compiled forward and backward, with every .grad allocated once
  and zeroed in place (a graph's outputs are overwritten by its next replay, so gradient accumulation must add
  into memory the graphs do not own). Measured in session 8: no gain.
* ``compiled_autograd``: ``loss.backward()`` traced whole at run time and compiled by inductor (PyTorch's compiled
  autograd), so that the gradient accumulation adds (≈ 110 small kernels per micro-batch, 30 ms of a seed step in
  session 8's profile) fuse with the casts and products around them.
* ``autograd_adds``: ``loss.backward()``, autograd adding each gradient into ``.grad`` as it arrives: the trainer
  before ``accumulate_gradients`` (one ``_foreach_add_`` after the backward, session 10).
* ``autocast_casts``: autocast casting the block weights to bf16 on every micro-batch, the trainer before
  :mod:`cavegpt.train.bf16_weights` (session 15); the first losses should match ``off``'s bit for bit.
* ``off``: none of these, the trainer as it is, in the same harness.

The levers that replace the gradient adds run without the bf16 stand-ins, whose gradients only those adds deliver.

Prints the first losses (to compare a lever against off: the same data and initial weights) and the bench line.
Usage (device, repo root): PYTHONPATH=src python benchmarks/step_lever_gpu.py LEVER PRESET [key=value ...],
LEVER one of off, autograd_adds, cudagraphs, compiled_autograd, autocast_casts.
"""
import functools
import sys

import torch
from torch._dynamo import compiled_autograd

from cavegpt.config import build_config
from cavegpt.data.synthetic import bench_overrides
from cavegpt.optim.optimizers import Optimizers
from cavegpt.report.bench import bench_window
from cavegpt.train import trainer as trainer_module
from cavegpt.train.trainer import Trainer

WINDOW, STEPS = 1792, 10
LEVERS = ("off", "autograd_adds", "cudagraphs", "compiled_autograd", "autocast_casts")


def zero_in_place(self: Optimizers) -> None:
    for optimizer in self.by_name.values():
        optimizer.zero_grad(set_to_none=False)


def under_compiled_autograd(method):
    """``method`` with its forward and backward passes inside compiled autograd's context (static shapes)."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with compiled_autograd._enable(functools.partial(torch.compile, dynamic=False), dynamic=False):
            return method(*args, **kwargs)
    return wrapped


def main(synthetic_data: list[str]) -> None:
    lever, preset, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
    if lever not in LEVERS:
        sys.exit(f"lever {lever!r}: choose one of {', '.join(LEVERS)}")
    if lever == "cudagraphs":
        torch._inductor.config.triton.cudagraphs = True
        Optimizers.zero_grad = zero_in_place
    if lever in ("autograd_adds", "compiled_autograd"):
        trainer_module.accumulate_gradients = lambda loss, *_: loss.backward()  # the trainer's arguments: unused
    if lever == "compiled_autograd":
        Trainer.warmup = under_compiled_autograd(Trainer.warmup)
        Trainer.train_step = under_compiled_autograd(Trainer.train_step)
    config = build_config(preset, [*synthetic_data, *overrides])
    trainer = Trainer(config, echo=False)
    if lever in ("autocast_casts", "autograd_adds", "compiled_autograd"):
        trainer.bf16_weights = None
    seconds = trainer.warmup()
    if lever == "cudagraphs":
        for p in trainer.model.parameters():
            p.grad = torch.zeros_like(p)
    trainer.set_window(WINDOW)
    at = config.train.num_iterations - 1
    learning = config.train.num_iterations // 2  # the last step's learning rate is 0: no change to compare
    losses = [trainer.train_step(learning).item() for _ in range(4)]
    result = bench_window(trainer, WINDOW, STEPS, warmup_steps=0, at_step=at)
    print(f"{lever}: {preset} {' '.join(overrides)} | warm-up {seconds:.1f}s | first losses "
          + " ".join(f"{x:.5f}" for x in losses)
          + f" | {result.tokens_per_second:,.0f} tok/s | {result.seconds / STEPS:.3f} s/step | "
            f"peak {result.peak_memory_gib:.2f} GiB")


if __name__ == "__main__":
    with bench_overrides() as synthetic_data:
        main(synthetic_data)
