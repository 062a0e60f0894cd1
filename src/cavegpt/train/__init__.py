"""The training loop, its run folder and checkpoints."""

from cavegpt.train.trainer import RunResult, TrainConfig, Trainer

__all__ = ["RunResult", "TrainConfig", "Trainer"]
