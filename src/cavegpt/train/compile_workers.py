"""torch.compile's compile workers: released once the graphs are built, never allowed to hold up the exit.

Inductor compiles kernels in a side process (the "sidecar") that runs a pool of worker processes,
and shuts it down from an ``atexit`` handler that waits up to 300 s for the sidecar to exit. In
PyTorch 2.11 (the lent GPUs' version) the sidecar's own exit joins its pool's workers
(multiprocessing's finalizer calls ``ProcessPoolExecutor.shutdown(wait=True)``), so one wedged
worker holds the process at exit for up to 5 minutes: a ``torchrun`` job then sits silent after its
last line until the wait runs out (issue 19). Later PyTorch kills such a sidecar after the wait
(``torch/_inductor/compile_worker/subproc_pool.py``). cavegpt releases the workers itself as soon as
compilation is done, in a thread it waits on for at most ``timeout_s``, and kills the sidecars that
have not gone by then, with their workers (which would otherwise live on as orphans).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

RELEASE_TIMEOUT_S = 30.0


def release_compile_workers(timeout_s: float = RELEASE_TIMEOUT_S) -> bool:
    """Shut inductor's compile workers down; True if they went by themselves within ``timeout_s``.

    A later compilation starts a fresh pool. Uses inductor's private ``_pool_set`` to find the side
    processes to kill; where a PyTorch version lacks it, only the shutdown is attempted.
    """
    async_compile = sys.modules.get("torch._inductor.async_compile")
    if async_compile is None:  # nothing was compiled in this process
        return True
    pools = list(getattr(async_compile, "_pool_set", ()))
    shutdown = threading.Thread(target=async_compile.shutdown_compile_workers, daemon=True)
    shutdown.start()
    shutdown.join(timeout_s)
    if not shutdown.is_alive():
        return True
    for pool in pools:
        process = getattr(pool, "process", None)  # the sidecar of a SubprocPool
        if process is not None and process.poll() is None:
            for worker in _children(process.pid):
                _kill(worker)
            process.kill()
    shutdown.join(timeout_s)
    return False


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux's /proc; elsewhere none are found)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)": state, ppid, ...
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
