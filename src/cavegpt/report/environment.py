"""What a leaderboard row must name about where a run ran: command, commit, GPU, library versions."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import cavegpt

PACKAGE_DIR = Path(cavegpt.__file__).resolve().parent


def source_commit() -> str:
    """The git commit of the cavegpt source that runs, with ``-dirty`` for uncommitted changes.

    A wheel install has no git checkout; it says so rather than guessing.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return f"unknown (cavegpt {cavegpt.__version__}, not run from a git checkout)"
    return commit + ("-dirty" if dirty else "")


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user would type it again."""
    argv = list(sys.argv if argv is None else argv)
    if argv and Path(argv[0]).name in ("__main__.py", "cavegpt"):
        argv[0] = "cavegpt"
    return shlex.join(argv)


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "command": command_line(),
        "commit": source_commit(),
        "cavegpt": cavegpt.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    else:
        info.update(gpu=None, cpu=platform.processor() or platform.machine())
    return info
