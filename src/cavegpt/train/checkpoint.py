"""Checkpoints: ``checkpoint_step001750_loss3.2860.pt`` with model, optimizers, data position."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "cavegpt-checkpoint-v1"


def checkpoint_name(step: int, val_loss: float) -> str:
    return f"checkpoint_step{step:06d}_loss{val_loss:.4f}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write to a temporary file, fsync, then rename: a crash never leaves a torn checkpoint."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``: a checkpoint can hold tensors and plain data, never code."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a cavegpt checkpoint (expected format {FORMAT!r})")
    return state
