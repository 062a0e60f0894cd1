"""The run folder ``logs/<run_id>/``: config.json, run.json, log.txt (the seed's line format), metrics.jsonl."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cavegpt.train.loggers import MetricSink


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class RunLog:
    """Appends lines to ``log.txt`` and records to ``metrics.jsonl`` (and to an optional tracker)."""

    def __init__(self, folder: Path, show: Callable[[str], None] | None = print, sink: MetricSink | None = None,
                 enabled: bool = True):
        """``enabled=False``: a log that writes nothing (ranks other than 0)."""
        self.folder = folder
        self.show = show
        self.sink = sink
        self.enabled = enabled
        if enabled:
            folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "log.txt"

    def write_config(self, config: dict[str, Any]) -> None:
        if not self.enabled:
            return
        (self.folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def write_environment(self, environment: dict[str, Any]) -> None:
        """run.json: the command, commit, GPU and versions the report names. A resumed run keeps the first."""
        if not self.enabled:
            return
        path = self.folder / "run.json"
        if not path.exists():
            path.write_text(json.dumps(environment, indent=2) + "\n")

    def metric(self, **record: Any) -> None:
        """One JSON record in ``metrics.jsonl`` (per logged step and per validation)."""
        if not self.enabled:
            return
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.sink is not None:
            self.sink.log(record)

    def drop_metrics_after(self, step: int) -> None:
        """On resume: forget records past the checkpoint's step, which the run will produce again."""
        if not self.enabled:
            return
        path = self.folder / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def line(self, text: str, show: bool = True) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(text + "\n")
        if show and self.show is not None:
            self.show(text)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()


def step_line(step: int, total: int, train_time_ms: float, timed_steps: int, **values: float) -> str:
    """``step:N/M name:value … train_time:…ms step_avg:…ms``, as the seed's logs read."""
    fields = " ".join(f"{name}:{value:.4f}" for name, value in values.items())
    step_avg = train_time_ms / timed_steps if timed_steps else float("nan")
    return f"step:{step}/{total} {fields} train_time:{train_time_ms:.0f}ms step_avg:{step_avg:.2f}ms"
