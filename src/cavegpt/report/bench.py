"""``cavegpt bench``: compile time, tokens/s, MFU with its terms, peak memory — on this GPU."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from cavegpt.report.mfu import FlopTerms
from cavegpt.train.trainer import Trainer


@dataclass
class BenchResult:
    window: int
    steps: int
    seconds: float
    tokens_per_second: float
    flops: FlopTerms
    peak_memory_gib: float

    def mfu(self, peak_tflops: float) -> float:
        return self.flops.per_token * self.tokens_per_second / (peak_tflops * 1e12)


def bench_window(trainer: Trainer, window: int, steps: int, warmup_steps: int = 2, at_step: int = 0) -> BenchResult:
    """Time ``steps`` optimizer steps at a fixed attention window, after ``warmup_steps`` untimed.

    Every step is run as step ``at_step`` of the schedule: its batch size (under a batch ramp) and loss weights.
    """
    trainer.set_window(window)
    flops = trainer.flop_terms(window)
    for _ in range(warmup_steps):
        trainer.train_step(at_step)
    trainer.synchronize()
    if trainer.on_cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(at_step)
    trainer.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if trainer.on_cuda else float("nan")
    return BenchResult(window, steps, seconds, steps * trainer.step_tokens(at_step) / seconds, flops, peak)
