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


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10,
                          check=True).stdout.strip()


def source_commit() -> str:
    """The git commit of the cavegpt source that runs, with ``-dirty`` for uncommitted changes.

    Only a checkout of cavegpt itself counts: its package sits at ``src/cavegpt`` of the repository
    and git tracks it. An installed copy inside some other repository (a virtual environment in the
    user's project) would otherwise report that repository's commit as cavegpt's.
    """
    try:
        if _git(PACKAGE_DIR, "rev-parse", "--show-prefix") != "src/cavegpt/":
            raise subprocess.CalledProcessError(1, "git")
        _git(PACKAGE_DIR, "ls-files", "--error-unmatch", "__init__.py")
        commit = _git(PACKAGE_DIR, "rev-parse", "HEAD")
        dirty = _git(PACKAGE_DIR, "status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return f"unknown (cavegpt {cavegpt.__version__} installed, not run from a git checkout of cavegpt)"
    return commit + ("-dirty" if dirty else "")


def user_commit(folder: Path | None = None) -> str | None:
    """The commit of the git repository the run was started in, when that is not cavegpt's own checkout."""
    folder = Path.cwd() if folder is None else folder
    try:
        top = _git(folder, "rev-parse", "--show-toplevel")
        if (Path(top) / "src" / "cavegpt").resolve() == PACKAGE_DIR:
            return None
        dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
        return _git(folder, "rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


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
        "user_commit": user_commit(),
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
