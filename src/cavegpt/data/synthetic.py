"""Shards of random tokens whose documents are as long as FineWeb's, for speed tests.

Almost no compute depends on which tokens are present, but the document mask does depend on where
the EOTs fall, so document lengths follow a log-normal with FineWeb's mean (about 1,000 GPT-2
tokens per document, heavy-tailed). The exception is small: the embedding rows' gradients are summed
per token, and uniform ids repeat less than text's, which costs a `seed` step on an H100 about 2.8 ms
more than English text does (docs/BENCHMARKS.md, session 19).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cavegpt.data.shards import write_shard
from cavegpt.model.masks import EOT_TOKEN

LOGNORMAL_SIGMA = 1.0


def synthetic_tokens(n_tokens: int, mean_doc_len: float, rng: np.random.Generator) -> np.ndarray:
    """``n_tokens`` tokens: documents of an EOT followed by random non-EOT ids."""
    mu = math.log(mean_doc_len) - LOGNORMAL_SIGMA**2 / 2  # so that the mean length is mean_doc_len
    tokens = rng.integers(0, EOT_TOKEN, size=n_tokens, dtype=np.uint16)
    lengths = np.maximum(1, rng.lognormal(mu, LOGNORMAL_SIGMA, size=n_tokens // max(1, int(mean_doc_len // 4)) + 2))
    starts = np.cumsum(np.concatenate([[0], lengths.astype(np.int64)]))
    tokens[starts[starts < n_tokens]] = EOT_TOKEN
    return tokens


def write_synthetic(out: str | Path, train_shards: int = 2, shard_tokens: int = 10_000_000,
                    val_tokens: int = 10_485_760 + 1, mean_doc_len: float = 1000.0, seed: int = 0,
                    progress: bool = True) -> list[Path]:
    """Write ``synthetic_val_000000.bin`` and ``synthetic_train_00000K.bin`` (K = 1..train_shards)."""
    if train_shards < 1 or shard_tokens < 1 or val_tokens < 1 or mean_doc_len < 1:
        raise ValueError("train_shards, shard_tokens, val_tokens and mean_doc_len must be positive")
    rng = np.random.default_rng(seed)
    out = Path(out)
    jobs = [(out / "synthetic_val_000000.bin", val_tokens)]
    jobs += [(out / f"synthetic_train_{k:06d}.bin", shard_tokens) for k in range(1, train_shards + 1)]
    written = []
    for path, n_tokens in tqdm(jobs, desc="writing shards", unit="shard", disable=not progress):
        written.append(write_shard(path, synthetic_tokens(n_tokens, mean_doc_len, rng)))
    return written


@contextlib.contextmanager
def bench_overrides() -> Iterator[list[str]]:
    """Synthetic shards for a speed test (20M train tokens, 1M val) in a temp folder that lives as long as the
    ``with`` block: the ``key=value`` overrides that point a config at them."""
    with tempfile.TemporaryDirectory(prefix="cavegpt-bench-") as folder:
        write_synthetic(folder, train_shards=1, shard_tokens=20_000_000, val_tokens=1_048_577, progress=False)
        yield [f"train_glob={folder}/synthetic_train_*.bin", f"val_glob={folder}/synthetic_val_*.bin",
               "val_tokens=1048576"]
