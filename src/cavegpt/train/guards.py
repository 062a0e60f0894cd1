"""What stops a run early, and how: a signal from the user, or numbers that are no longer numbers."""

from __future__ import annotations

import math
import signal
import sys
import threading
import types

import torch
from torch import nn


class NonFiniteError(RuntimeError):
    """The loss or a gradient became NaN or infinite; the message names the step and the group."""


def gradient_health(loss: torch.Tensor, groups: dict[str, list[nn.Parameter]]) -> tuple[list[str], torch.Tensor]:
    """(names of the groups that have gradients, ``[loss, bad_1, …, bad_G]``) on the device, no host sync.

    ``bad_g`` is 1.0 when group g's gradient norm is not finite. Summed over the ranks, the tensor
    gives every rank the same verdict for :func:`check_finite`.
    """
    names = [name for name, params in groups.items() if any(p.grad is not None for p in params)]
    norms = [torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
        [p.grad for p in groups[name] if p.grad is not None])).float()) for name in names]
    bad = (~torch.isfinite(torch.stack(norms))).float() if norms else loss.new_zeros(0, dtype=torch.float32)
    return names, torch.cat([loss.float().reshape(1), bad])


def check_finite(step: int, loss: float, names: list[str], bad: list[float]) -> None:
    """Raise ``NonFiniteError`` if ``loss`` is not finite or any group of ``names`` has ``bad`` > 0."""
    groups = [name for name, count in zip(names, bad) if count > 0]
    if not math.isfinite(loss):
        where = f"; gradients of {', '.join(groups)} too" if groups else ""
        raise NonFiniteError(f"step {step}: the training loss is {loss}{where}")
    if groups:
        raise NonFiniteError(f"step {step}: non-finite gradient norm in parameter group(s) {', '.join(groups)}")


class StopSignals:
    """First SIGINT/SIGTERM: ask the loop to stop after this step. Second SIGINT: abort at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = name
        print(f"\n{name}: finishing this step and saving a checkpoint (Ctrl-C again to abort at once)",
              file=sys.stderr, flush=True)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; a run in another thread keeps the defaults
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
