"""``loss.png``: train and val loss against steps and against training minutes, for one run or several."""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.figure import Figure

from cavegpt.report.runs import Run


def smoothed(values: list[float], keep: float = 0.8) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not dragged towards zero."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = keep * average + (1 - keep) * value
        out.append(average / (1 - keep**i))
    return out


def plot_runs(runs: list[Run], path: str | Path) -> Figure:
    """Draw ``runs`` on one figure, save it as PNG at ``path`` and return it (its lines hold the data).

    Left: loss against optimizer steps; right: against training minutes (validation excluded).
    Lines are labelled ``<run> train`` / ``<run> val``; dashed verticals mark each run's cooldown start,
    the dotted horizontal the target loss.
    """
    figure = Figure(figsize=(13, 5), layout="constrained")
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    several = len(runs) > 1
    longest_ms = max((r["train_time_ms"] for run in runs for r in run.train), default=0.0)
    unit, per_unit_ms = ("minutes", 60000) if longest_ms >= 120_000 else ("seconds", 1000)
    for run, color in zip(runs, itertools.cycle(f"C{i}" for i in range(10))):
        label = run.name if several else ""
        train_steps = [r["step"] for r in run.train]
        train_minutes = [r["train_time_ms"] / per_unit_ms for r in run.train]
        train_losses = [r["train_loss"] for r in run.train]
        val_steps = [r["step"] for r in run.val]
        val_minutes = [r["train_time_ms"] / per_unit_ms for r in run.val]
        val_losses = [r["val_loss"] for r in run.val]
        for axes, train_x, val_x in ((by_step, train_steps, val_steps), (by_time, train_minutes, val_minutes)):
            axes.plot(train_x, train_losses, color=color, linewidth=0.6, alpha=0.3, label=f"{label} train".strip())
            axes.plot(train_x, smoothed(train_losses), color=color, linewidth=1.2, alpha=0.8,
                      label=f"{label} train (EMA)".strip())
            axes.plot(val_x, val_losses, color=color, linewidth=2, marker="o", markersize=4,
                      label=f"{label} val".strip())
        cooldown_minutes = run.train_time_at(run.cooldown_start)
        if 0 < run.cooldown_start <= (train_steps[-1] if train_steps else 0):
            by_step.axvline(run.cooldown_start, color=color, linestyle="--", linewidth=1,
                            label=f"{label} cooldown starts".strip())
            if cooldown_minutes is not None:
                by_time.axvline(cooldown_minutes / per_unit_ms, color=color, linestyle="--", linewidth=1,
                                label=f"{label} cooldown starts".strip())
    targets = sorted({run.target for run in runs if run.target is not None})
    for target in targets:
        for axes in (by_step, by_time):
            axes.axhline(target, color="black", linestyle=":", linewidth=1.2, label=f"target {target}")
    by_step.set_xlabel("optimizer step")
    by_time.set_xlabel(f"training time ({unit}, validation excluded)")
    by_step.set_ylabel("loss (nats/token)")
    # the first losses (≈ 10.8) would squash the part worth reading: start the axis just above the
    # highest validation after step 0 (or the first train loss when there is none)
    late = [r["val_loss"] for run in runs for r in run.val if r["step"] > 0] or \
           [r["train_loss"] for run in runs for r in run.train]
    lowest = [*late, *targets, *(min(smoothed([r["train_loss"] for r in run.train])) for run in runs if run.train)]
    if late:
        by_step.set_ylim(min(lowest) * 0.97, max([*late, *targets]) * 1.15)
    for axes in (by_step, by_time):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8, loc="upper right")
    figure.suptitle(" vs ".join(run.name for run in runs) if several else f"run {runs[0].name}")
    figure.savefig(path, dpi=110)
    return figure
