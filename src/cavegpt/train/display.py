"""Live training progress on stdout: a tqdm bar on a terminal, plain status lines anywhere else.

The bar and the lines carry the same fields: step/total, train loss, the latest val loss, tokens/s,
MFU, training time so far (validation excluded, as the leaderboard counts it), ETA (validation
included) and when the target loss was crossed.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any, TextIO

from tqdm import tqdm


def duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3.4s``."""
    if seconds != seconds or seconds < 0:  # NaN: nothing measured yet
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class LiveDisplay:
    """Shows a run's progress; event lines (validation, checkpoints) go through :meth:`write`."""

    def __init__(self, total: int, start_step: int, start_time_ms: float, val_every: int,
                 target: float | None, file: TextIO | None = None, tty: bool | None = None):
        self.file = file or sys.stdout
        self.tty = self.file.isatty() if tty is None else tty
        self.total, self.start_step, self.start_time_ms = total, start_step, start_time_ms
        self.val_every, self.target = val_every, target
        self.val_loss: float | None = None
        self.validated_at: int | None = None
        self.val_seconds: list[float] = []
        self.target_at: tuple[int, float] | None = None  # (step, train time in ms)
        # a fixed-width bar with the fields after it; the size falls back to 160 × 24 where a pty reports
        # 0 × 0, which would make tqdm hide the bar
        size = shutil.get_terminal_size((160, 24))
        self.bar = (tqdm(total=total, initial=start_step, file=self.file, unit="step", ncols=size.columns,
                         nrows=size.lines,
                         bar_format="{n_fmt}/{total_fmt} |{bar:20}| {desc}") if self.tty else None)

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def validated(self, step: int, val_loss: float, seconds: float) -> None:
        self.val_loss, self.validated_at = val_loss, step
        self.val_seconds.append(seconds)

    def target_reached(self, step: int, train_time_ms: float) -> None:
        self.target_at = (step, train_time_ms)

    def eta_seconds(self, step: int, train_time_ms: float) -> float:
        """Remaining steps at the mean step time so far, plus the remaining validations at theirs."""
        timed = step - self.start_step
        if timed <= 0:
            return float("nan")
        per_step = (train_time_ms - self.start_time_ms) / 1000 / timed
        remaining_vals = 1 + (sum(1 for s in range(step + 1, self.total) if s % self.val_every == 0)
                              if self.val_every else 0)
        per_val = sum(self.val_seconds) / len(self.val_seconds) if self.val_seconds else 0.0
        return (self.total - step) * per_step + remaining_vals * per_val

    def fields(self, record: dict[str, Any]) -> list[str]:
        step, train_time_ms = record["step"], record["train_time_ms"]
        out = [f"train_loss {record['train_loss']:.4f}"]
        if self.val_loss is not None:
            out.append(f"val_loss {self.val_loss:.4f} @{self.validated_at}")
        out.append(f"{record['tokens_per_second']:,.0f} tok/s")
        if record.get("mfu") is not None:
            out.append(f"MFU {record['mfu']:.1%}")
        out += [f"train {duration(train_time_ms / 1000)}", f"ETA {duration(self.eta_seconds(step, train_time_ms))}"]
        if self.target is not None:
            out.append(f"target {self.target} " + (f"reached at step {self.target_at[0]}, "
                                                   f"{duration(self.target_at[1] / 1000)}"
                                                   if self.target_at else "not yet"))
        return out

    def update(self, record: dict[str, Any]) -> None:
        """``record``: a train record of metrics.jsonl (step, train_loss, tokens_per_second, mfu, …)."""
        fields = self.fields(record)
        if self.bar is not None:
            self.bar.set_description_str(" | ".join(fields), refresh=False)
            self.bar.update(record["step"] - self.bar.n)
        else:
            print(" | ".join([f"step {record['step']}/{self.total}", *fields]), file=self.file, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
