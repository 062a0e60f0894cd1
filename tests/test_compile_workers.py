"""torch.compile's compile-worker processes: a wedged one holds the exit until cavegpt releases it (issue 19)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A process that made inductor's compile-worker pool (as compiling for a GPU does) and whose side process
# then stops answering: at exit, inductor's atexit handler waits up to 300 s for it.
WEDGED = """
import os, signal, sys
from torch._inductor.async_compile import AsyncCompile
pool = AsyncCompile.process_pool()
assert pool.submit(sum, [1, 2]).result() == 3
os.kill(pool.process.pid, signal.SIGSTOP)
if sys.argv[1] == "release":
    from cavegpt.train.compile_workers import release_compile_workers
    print("released cleanly:", release_compile_workers(timeout_s=2.0), flush=True)
print("last line", flush=True)
"""


def start(mode: str) -> subprocess.Popen:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", WEDGED, mode], stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group: the stopped side process dies with it


@pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP and process groups are POSIX")
def test_a_wedged_compile_worker_holds_the_exit_unless_released() -> None:
    hung = start("plain")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            hung.wait(timeout=20)  # it printed its last line long ago, yet it does not exit
    finally:
        os.killpg(hung.pid, signal.SIGKILL)
        hung.wait()
    assert hung.stdout.read().strip() == "last line"
    released = start("release")
    started = time.perf_counter()
    assert released.wait(timeout=60) == 0
    assert released.stdout.read().split() == ["released", "cleanly:", "False", "last", "line"]
    assert time.perf_counter() - started < 30
    assert not group_alive(released.pid, seconds=15)  # no compile worker was left behind as an orphan


def group_alive(group: int, seconds: float) -> bool:
    """Whether process group ``group`` still has members after ``seconds`` (killed ones linger a moment as zombies)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.5)
    return True
