"""``cavegpt data fineweb``: the speedrun's pre-tokenized FineWeb shards from the Hugging Face hub.

Downloads go through ``huggingface_hub.hf_hub_download`` (honouring ``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN``), which writes to a temporary file and renames it when complete
and resumes a dropped connection with an HTTP range request. On top of that, every shard is checked
(header + size): complete shards already on disk are skipped without touching the network, and a
shard that fails the check is fetched once more, then reported.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
from huggingface_hub.utils import logging as hub_logging
from huggingface_hub import constants
from huggingface_hub import errors as hub_errors
from tqdm import tqdm

from cavegpt.data.shards import DataError, ShardError, read_header

REPO_ID = "kjj0/fineweb10B-gpt2"
TOKENS_PER_SHARD = 100_000_000
DEFAULT_DIR = "data/fineweb10B"


def shards_needed(train_tokens: int) -> int:
    """Train shards holding ``train_tokens`` (the seed's 0.92B tokens → 10)."""
    return max(1, math.ceil(train_tokens / TOKENS_PER_SHARD))


def shard_names(train_shards: int) -> list[str]:
    return ["fineweb_val_000000.bin"] + [f"fineweb_train_{k:06d}.bin" for k in range(1, train_shards + 1)]


@dataclass
class DownloadReport:
    fetched: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    refetched: list[Path] = field(default_factory=list)


def _is_complete(path: Path) -> bool:
    try:
        read_header(path)
        return True
    except ShardError:
        return False


def hub_error_message(error: Exception, endpoint: str, repo_id: str = REPO_ID) -> str:
    """One sentence for a failed download of a file of the dataset ``repo_id``."""
    if isinstance(error, hub_errors.OfflineModeIsEnabled) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return "HF_HUB_OFFLINE is set, so nothing can be downloaded; unset it or copy the files in by hand."
    if isinstance(error, (hub_errors.RepositoryNotFoundError, hub_errors.GatedRepoError)):
        return f"{endpoint} has no dataset {repo_id} you can read (check HF_TOKEN and HF_ENDPOINT)."
    if isinstance(error, hub_errors.EntryNotFoundError) and not isinstance(error, hub_errors.LocalEntryNotFoundError):
        return f"{endpoint} has no such file in {repo_id}: {error}".splitlines()[0]
    return (f"Could not download from the Hugging Face hub at {endpoint} ({type(error).__name__}); check the "
            "network connection, or HF_ENDPOINT if you use a mirror.")


class _Fetcher:
    def __init__(self, directory: Path, endpoint: str):
        self.directory, self.endpoint = directory, endpoint

    def download(self, name: str, force: bool) -> Path:
        try:
            return Path(huggingface_hub.hf_hub_download(REPO_ID, name, repo_type="dataset", local_dir=self.directory,
                                                        endpoint=self.endpoint, force_download=force))
        except (hub_errors.HfHubHTTPError, hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled,
                OSError) as e:
            raise DataError(hub_error_message(e, self.endpoint)) from None

    def fetch(self, name: str) -> tuple[Path, bool]:
        """Download ``name`` and check it; fetch once more if the check fails. Returns (path, refetched)."""
        path = self.download(name, force=False)
        if _is_complete(path):
            return path, False
        path.unlink(missing_ok=True)
        path = self.download(name, force=True)
        try:
            read_header(path)
        except ShardError as e:
            path.unlink(missing_ok=True)
            raise DataError(f"{name} failed its check twice (downloaded and re-downloaded): {e}") from None
        return path, True


def download_fineweb(directory: str | Path = DEFAULT_DIR, train_shards: int = 10, workers: int = 8,
                     progress: bool = True) -> DownloadReport:
    """Make ``directory`` hold the val shard and ``train_shards`` train shards, all checked."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    report = DownloadReport()
    missing = []
    for name in shard_names(train_shards):
        (report.skipped if _is_complete(directory / name) else missing).append(directory / name)
    if not missing:
        return report

    fetcher = _Fetcher(directory, endpoint)
    disable_progress_bars()  # one bar for the whole download, below
    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # its retry chatter; failures reach the user as one sentence
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(missing), desc="FineWeb shards", unit="shard", disable=not progress) as bar:
            for path, refetched in pool.map(fetcher.fetch, [p.name for p in missing]):
                (report.refetched if refetched else report.fetched).append(path)
                bar.update(1)
    finally:
        enable_progress_bars()
        hub_logging.set_verbosity(verbosity)
    return report
