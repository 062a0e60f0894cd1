"""The token shard format (llm.c / modded-nanogpt, used by kjj0/fineweb10B-gpt2).

A shard is a 1024-byte header of 256 little-endian int32 — ``[20240520, 1, n_tokens, 0, …]`` —
followed by ``n_tokens`` little-endian uint16 token ids. This module is the only place that knows.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKEN = np.iinfo(np.uint16).max
VOCAB_SIZE = 50257  # GPT-2: every token id of a shard must be below this


class DataError(ValueError):
    """Data that cannot be used as asked; the message says what and where."""


class ShardError(DataError):
    """A file that is not a readable shard; the message names the file and the problem."""


def write_shard(path: str | Path, tokens: np.ndarray) -> Path:
    """Write ``tokens`` as a shard, atomically: a crash leaves no half-written file behind."""
    path = Path(path)
    tokens = np.asarray(tokens)
    if tokens.ndim != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tokens.shape}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > MAX_TOKEN):
        raise ValueError(f"token ids must fit uint16 (0..{MAX_TOKEN}); got {tokens.min()}..{tokens.max()}")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (MAGIC, VERSION, tokens.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2", copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return path


def read_header(path: str | Path) -> int:
    """Check magic, version and file size; return the number of tokens."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte header")
    header = np.frombuffer(raw, dtype="<i4")
    if header[0] != MAGIC:
        raise ShardError(f"{path}: magic number {header[0]} at byte 0, expected {MAGIC} (not a token shard)")
    if header[1] != VERSION:
        raise ShardError(f"{path}: version {header[1]} at byte 4, expected {VERSION}")
    n_tokens = int(header[2])
    expected = HEADER_BYTES + 2 * n_tokens
    if n_tokens < 0 or size != expected:
        raise ShardError(f"{path}: header says {n_tokens} tokens ({expected} bytes) but the file has {size} bytes"
                         " (truncated or corrupt)")
    return n_tokens


def read_tokens(path: str | Path, vocab_size: int = VOCAB_SIZE) -> np.ndarray:
    """All tokens of a shard as uint16, after checking the header and that every id is < ``vocab_size``."""
    n_tokens = read_header(path)
    tokens = np.fromfile(path, dtype="<u2", count=n_tokens, offset=HEADER_BYTES)
    out_of_range = np.flatnonzero(tokens >= vocab_size)
    if out_of_range.size:
        first = int(out_of_range[0])
        raise ShardError(f"{path}: token {int(tokens[first])} at byte {HEADER_BYTES + 2 * first} is outside the "
                         f"vocabulary (must be < {vocab_size}); {out_of_range.size} such tokens")
    return tokens
