"""Shared fixtures: the offline tokenizer, the textmix shards, small configs."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEXTMIX = SHARED / "data" / "textmix"

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tokenizer"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker and per CLI it starts: two workers share CI's 2 cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)


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
    """The tiny preset's full 200 steps on textmix through ``cavegpt train``: shared by the train, report and hf tests.
    Under pytest-xdist the workers share one run too: the first to need it trains it under a lock, and the others
    wait for it there (a session fixture is otherwise made once per worker)."""
    if not (TEXTMIX / "textmix_val_000000.bin").exists():
        pytest.skip(f"textmix shards not found at {TEXTMIX}")
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's base folder sits in the run's one folder
    logs, stdout = shared / "tiny_run", shared / "tiny_run_stdout.txt"
    with FileLock(shared / "tiny_run.lock"):
        if not stdout.exists():
            result = cavegpt("train", "--preset", "tiny", *textmix_overrides(TEXTMIX), f"log_dir={logs}",
                             "run_id=tiny", "log_every=10")
            assert result.returncode == 0, result.stderr
            stdout.write_text(result.stdout)
    return TinyRun(logs / "tiny", stdout.read_text())
