"""Shared fixtures: the offline tokenizer, the textmix shards, small configs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEXTMIX = SHARED / "data" / "textmix"

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tokenizer"))


@pytest.fixture
def textmix() -> Path:
    if not (TEXTMIX / "textmix_val_000000.bin").exists():
        pytest.skip(f"textmix shards not found at {TEXTMIX} (they sit in ../shared beside the repo)")
    return TEXTMIX


def textmix_overrides(folder: Path) -> list[str]:
    return [f"train_glob={folder}/textmix_train_*.bin", f"val_glob={folder}/textmix_val_*.bin"]


def cavegpt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (stdout is a pipe, not a terminal)."""
    src = str(Path(__file__).resolve().parents[1] / "src")  # the package under test, from any cwd
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "cavegpt", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


@dataclass
class TinyRun:
    folder: Path
    stdout: str


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """The tiny preset's full 200 steps on textmix through ``cavegpt train``: shared by the train and report tests."""
    if not (TEXTMIX / "textmix_val_000000.bin").exists():
        pytest.skip(f"textmix shards not found at {TEXTMIX}")
    logs = tmp_path_factory.mktemp("logs")
    result = cavegpt("train", "--preset", "tiny", *textmix_overrides(TEXTMIX), f"log_dir={logs}", "run_id=tiny",
                     "log_every=10")
    assert result.returncode == 0, result.stderr
    return TinyRun(logs / "tiny", result.stdout)
