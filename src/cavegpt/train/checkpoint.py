"""Checkpoints: everything a run needs to continue exactly, written so that no crash can tear one.

Names: ``checkpoint_step000500.pt`` for periodic saves, ``checkpoint_step001750_loss3.2860.pt`` for
the one written at the end (the seed's name). A save goes to ``<name>.partial``, is flushed and
fsynced, then renamed: the previous checkpoint stays whole whatever happens during the write.
Loading uses ``torch.load(weights_only=True)``: tensors and plain data only, never code.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

FORMAT = "cavegpt-checkpoint-v1"
NAME = re.compile(r"^checkpoint_step(\d{6})(_loss[\d.]+|_loss-?nan)?\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or used; the message says why."""


def checkpoint_name(step: int, val_loss: float | None = None) -> str:
    return f"checkpoint_step{step:06d}" + ("" if val_loss is None else f"_loss{val_loss:.4f}") + ".pt"


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically; on a full disk, leave the old files alone and say how much was needed."""
    needed = _tensor_bytes(state) + (1 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointError(f"not enough space for a checkpoint in {path.parent}: needs about "
                              f"{needed / 2**20:,.0f} MiB, {free / 2**20:,.0f} MiB free")
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise CheckpointError(f"disk full while writing {path.name}: needs about {needed / 2**20:,.0f} MiB "
                                  f"in {path.parent}; the previous checkpoint is untouched") from None
        raise CheckpointError(f"could not write {path}: {e.strerror}") from None
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a cavegpt checkpoint, refusing anything else with a reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for foreign or torn files; all mean "not usable"
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable cavegpt checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cavegpt checkpoint (no {FORMAT!r} marker; "
                              "written by another program or version)")
    return state


def checkpoints_in(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the run folder's checkpoints, oldest first."""
    found = [(int(m[1]), p) for p in run_dir.glob("checkpoint_step*.pt") if (m := NAME.match(p.name))]
    return sorted(found, key=lambda item: (item[0], "_loss" in item[1].name))


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of ``run_dir`` that loads; torn or foreign files are passed over."""
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    problems = []
    for _, path in reversed(checkpoints_in(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as e:
            problems.append(str(e))
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"{run_dir}: no usable checkpoint to resume from{detail}")


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the ``keep`` newest periodic checkpoints; the final (named with a loss) always stays."""
    periodic = [path for _, path in checkpoints_in(run_dir) if "_loss" not in path.name]
    for path in periodic[:-keep] if keep > 0 else []:
        path.unlink(missing_ok=True)
