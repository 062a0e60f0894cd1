"""Optional experiment trackers (``logger=tensorboard`` or ``logger=wandb``): metrics.jsonl's records, mirrored.

Neither package is a dependency; asking for one that is not installed stops the run before it starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

LOGGERS = ("none", "tensorboard", "wandb")


class LoggerUnavailable(RuntimeError):
    """The tracker asked for is not installed."""


class MetricSink(Protocol):
    def log(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def numeric_fields(record: dict[str, Any]) -> dict[str, float]:
    """``{"train/train_loss": 3.9, ...}``: the record's numbers, under its kind (train or val)."""
    kind = record.get("kind", "metric")
    return {f"{kind}/{key}": float(value) for key, value in record.items()
            if key not in ("kind", "step") and isinstance(value, (int, float)) and not isinstance(value, bool)}


class TensorBoardSink:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise LoggerUnavailable("logger=tensorboard needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        for name, value in numeric_fields(record).items():
            self.writer.add_scalar(name, value, record["step"])

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, run_dir: Path, config: dict[str, Any]):
        try:
            import wandb
        except ImportError:
            raise LoggerUnavailable("logger=wandb needs the wandb package: pip install wandb "
                                    "(then wandb login, or WANDB_MODE=offline)") from None
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "cavegpt"), name=run_dir.name, id=run_dir.name,
                              dir=str(run_dir), config=config, resume="allow")

    def log(self, record: dict[str, Any]) -> None:
        self.run.log(numeric_fields(record), step=record["step"])

    def close(self) -> None:
        self.run.finish()


def open_sink(name: str, run_dir: Path, config: dict[str, Any]) -> MetricSink | None:
    if name == "tensorboard":
        return TensorBoardSink(run_dir)
    if name == "wandb":
        return WandbSink(run_dir, config)
    return None
