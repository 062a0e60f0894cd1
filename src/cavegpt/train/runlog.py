"""The run folder ``logs/<run_id>/``: config.json, log.txt (the seed's line format), checkpoints."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class RunLog:
    """Appends lines to ``log.txt`` and echoes them to stdout."""

    def __init__(self, folder: Path, echo: bool = True):
        self.folder = folder
        self.echo = echo
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "log.txt"

    def write_config(self, config: dict[str, Any]) -> None:
        (self.folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def metric(self, **record: Any) -> None:
        """One JSON record in ``metrics.jsonl`` (per logged step and per validation)."""
        with open(self.folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def drop_metrics_after(self, step: int) -> None:
        """On resume: forget records past the checkpoint's step, which the run will produce again."""
        path = self.folder / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept))

    def line(self, text: str) -> None:
        with open(self.path, "a") as f:
            f.write(text + "\n")
        if self.echo:
            print(text, flush=True)


def step_line(step: int, total: int, train_time_ms: float, timed_steps: int, **values: float) -> str:
    """``step:N/M name:value … train_time:…ms step_avg:…ms``, as the seed's logs read."""
    fields = " ".join(f"{name}:{value:.4f}" for name, value in values.items())
    step_avg = train_time_ms / timed_steps if timed_steps else float("nan")
    return f"step:{step}/{total} {fields} train_time:{train_time_ms:.0f}ms step_avg:{step_avg:.2f}ms"
