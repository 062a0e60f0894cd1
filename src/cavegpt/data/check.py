"""``cavegpt data check``: is every shard readable, in range, and what does it hold?"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from cavegpt.data.shards import DataError, ShardError, read_tokens
from cavegpt.model.masks import EOT_TOKEN


@dataclass
class ShardReport:
    path: Path
    n_tokens: int = 0
    n_documents: int = 0
    error: str | None = None

    @property
    def mean_document_length(self) -> float:
        return self.n_tokens / self.n_documents if self.n_documents else float("nan")


def shard_paths(target: str) -> list[Path]:
    """A folder's ``*.bin`` files, or the files a glob matches."""
    pattern = str(Path(target) / "*.bin") if Path(target).is_dir() else target
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise DataError(f"no shards found at {target!r} (give a folder of .bin files or a glob)")
    return files


def check_shard(path: Path) -> ShardReport:
    try:
        tokens = read_tokens(path)
    except ShardError as e:
        return ShardReport(path, error=str(e))
    return ShardReport(path, int(tokens.size), int((tokens == EOT_TOKEN).sum()))
