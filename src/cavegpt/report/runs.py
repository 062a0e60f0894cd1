"""A finished (or stopped) run, read back from its folder: config.json, run.json, metrics.jsonl."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RunFolderError(ValueError):
    """A folder that is not a readable cavegpt run; the message says what is missing."""


@dataclass
class Run:
    folder: Path
    config: dict[str, Any]
    environment: dict[str, Any]  # run.json: command, commit, GPU, versions
    train: list[dict[str, Any]]  # metrics.jsonl records of kind "train", by step
    val: list[dict[str, Any]]  # and of kind "val"

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def target(self) -> float | None:
        return self.config["train"].get("target_val_loss")

    @property
    def cooldown_start(self) -> int:
        """The first step of the learning-rate cooldown."""
        return self.config["train"]["num_iterations"] - self.config["optim"]["cooldown_iters"]

    @property
    def target_val(self) -> dict[str, Any] | None:
        """The first validation at or under the target, if any."""
        if self.target is None:
            return None
        return next((v for v in self.val if v["val_loss"] <= self.target), None)

    @property
    def final_val(self) -> dict[str, Any] | None:
        """Where the leaderboard's clock stops: the validation that crossed the target, else the last one."""
        return self.target_val or (self.val[-1] if self.val else None)

    def train_time_at(self, step: int) -> float | None:
        """Training milliseconds when ``step`` was reached (None if the run never got there)."""
        for record in self.train:
            if record["step"] >= step:
                return record["train_time_ms"]
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{path} is not valid JSON ({e})") from None


def load_run(folder: str | Path) -> Run:
    folder = Path(folder)
    if not folder.is_dir():
        raise RunFolderError(f"{folder} is not a folder; give a run folder such as logs/<run_id>")
    metrics_path = folder / "metrics.jsonl"
    for needed in (folder / "config.json", metrics_path):
        if not needed.exists():
            raise RunFolderError(f"{folder} has no {needed.name}: not a cavegpt run folder, or the run "
                                 "stopped before its first logged step")
    records = []
    for number, line in enumerate(metrics_path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunFolderError(f"{metrics_path}:{number} is not a JSON record") from None
    environment = _read_json(folder / "run.json") if (folder / "run.json").exists() else {}
    return Run(folder, _read_json(folder / "config.json"), environment,
               sorted((r for r in records if r.get("kind") == "train"), key=lambda r: r["step"]),
               sorted((r for r in records if r.get("kind") == "val"), key=lambda r: r["step"]))
