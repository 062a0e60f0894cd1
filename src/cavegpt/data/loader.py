"""Streaming training and validation batches out of shards."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from cavegpt.data.shards import DataError, read_header, read_tokens
from cavegpt.model.attention import Documents
from cavegpt.model.masks import EOT_TOKEN


@dataclass
class DataConfig:
    """Where the tokens are and how they are cut. Defaults are the seed's."""

    train_glob: str = "data/fineweb10B/fineweb_train_*.bin"
    val_glob: str = "data/fineweb10B/fineweb_val_*.bin"
    seq_len: int = 32768  # tokens per sequence (documents packed; the mask separates them)
    batch_size: int = 1  # sequences per forward pass
    val_tokens: int = 10_485_760

    @property
    def micro_batch_tokens(self) -> int:
        return self.seq_len * self.batch_size

    def validate(self) -> None:
        if self.seq_len <= 0 or self.seq_len % 128:
            raise ValueError(f"seq_len={self.seq_len} must be a positive multiple of 128")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.val_tokens < self.micro_batch_tokens or self.val_tokens % self.micro_batch_tokens:
            raise ValueError(f"val_tokens={self.val_tokens} must be a positive multiple of "
                             f"seq_len*batch_size={self.micro_batch_tokens}")


def find_shards(pattern: str, what: str) -> list[Path]:
    files = sorted(Path(p) for p in glob.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no {what} shards match {pattern!r}. Download FineWeb with `cavegpt data fineweb`, make test "
            f"shards with `cavegpt data synthetic --out DIR`, or point {what}_glob=... at your shards.")
    return files


def document_bounds(tokens: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``[B, T]`` tokens → (cu_seqlens int32 [B·T + 1], documents, longest document).

    A document starts at every EOT and at every row's start (documents never cross rows: the mask
    rule compares document ids counted per row). ``cu_seqlens`` lists the starts in the flattened
    batch, then ``B·T``, padded with ``B·T`` to a fixed length.
    """
    rows, length = tokens.shape
    starts = np.zeros(tokens.shape, dtype=bool)
    starts[:, 0] = True
    starts |= tokens == EOT_TOKEN
    positions = np.flatnonzero(starts.reshape(-1))
    count = len(positions)
    cu_seqlens = np.full(rows * length + 1, rows * length, dtype=np.int32)
    cu_seqlens[:count] = positions
    longest = int(np.diff(cu_seqlens[:count + 1]).max())
    return cu_seqlens, count, longest


class Batch(NamedTuple):
    inputs: Tensor  # [batch, seq_len] token ids
    targets: Tensor  # the same, one token later
    documents: Documents | None  # where the inputs' documents start (streams made with documents=True)


class TokenStream:
    """Consecutive ``[batch, seq_len]`` windows of the shards, looping over the files.

    Each batch reads ``batch * seq_len + 1`` tokens and yields ``x = tokens[:-1]``,
    ``y = tokens[1:]``; the next batch starts where this one's inputs ended. A shard's tail too
    short for a whole batch is skipped. ``position`` is ``(shard index, offset)``. With
    ``documents``, each batch also carries its documents' boundaries, computed here on the host
    (FlashAttention-4's path, :mod:`cavegpt.model.attention`).
    """

    def __init__(self, files: list[Path], seq_len: int, batch_size: int, device: torch.device | str = "cpu",
                 documents: bool = False):
        self.files, self.seq_len, self.batch_size = files, seq_len, batch_size
        self.device = torch.device(device)
        self.documents = documents
        span = seq_len * batch_size + 1
        for file in files:
            n_tokens = read_header(file)
            if n_tokens < span:
                raise DataError(f"{file}: {n_tokens} tokens, fewer than one batch needs ({span})")
        bounds = seq_len * batch_size + 1 if documents else 0  # document_bounds' cu_seqlens
        self.staging = PinnedStaging(bounds + span, self.device) if self.device.type == "cuda" else None
        self.shard = -1
        self.offset = 0
        self.tokens = np.empty(0, dtype=np.uint16)
        self.seek(0, 0)

    @property
    def position(self) -> tuple[int, int]:
        return self.shard, self.offset

    def seek(self, shard: int, offset: int) -> None:
        if shard != self.shard:
            self.tokens = read_tokens(self.files[shard])
        self.shard, self.offset = shard, offset

    def _advance(self) -> int:
        """Move past the next batch; return where it starts in the current shard."""
        span = self.seq_len * self.batch_size
        if self.offset + span + 1 > len(self.tokens):
            self.seek((self.shard + 1) % len(self.files), 0)
        start = self.offset
        self.offset += span
        return start

    def skip_batch(self) -> None:
        """Pass over the next batch without reading it (another rank's share of the step)."""
        self._advance()

    def next_batch(self) -> Batch:
        span = self.seq_len * self.batch_size
        start = self._advance()
        host = self.tokens[start:start + span + 1]
        shape = (self.batch_size, self.seq_len)
        if not self.documents:
            chunk, documents = self._upload([host]).long(), None
        else:
            cu_seqlens, count, longest = document_bounds(host[:-1].reshape(shape))
            packed = self._upload([cu_seqlens, host])  # the bounds first: FA4 reads them from an aligned start
            chunk = packed[len(cu_seqlens):].long()
            documents = Documents(packed[:len(cu_seqlens)], torch.tensor([count, longest]))
        return Batch(chunk[:-1].view(shape), chunk[1:].view(shape), documents)

    def _upload(self, parts: list[np.ndarray]) -> Tensor:
        """``parts`` one after the other as one int32 tensor on the stream's device."""
        if self.staging is None:
            return torch.from_numpy(np.concatenate(parts).astype(np.int32))
        return self.staging.upload(parts)


class PinnedStaging:
    """Page-locked host buffers, reused in turn, from which each batch goes to the GPU in one copy.

    ``Tensor.pin_memory()`` for each batch (two per batch with the document bounds) cost the host 4.8 ms per
    micro-batch on the lent H100 machine, against 0.6 ms from these buffers. `seed` has the time to spare; `12gb`,
    whose 64 micro-batches a step leave the host behind the GPU, ran 5.3 % faster (docs/BENCHMARKS.md, session 17).
    A buffer is refilled only once the GPU has read it: with ``SLOTS`` of them that wait never comes in practice,
    since the host runs at most a micro-batch or two ahead (CUDA's launch queue is bounded).
    """

    SLOTS = 4

    def __init__(self, numel: int, device: torch.device):
        self.device = device
        self.buffers = [torch.empty(numel, dtype=torch.int32, pin_memory=True) for _ in range(self.SLOTS)]
        self.copied = [torch.cuda.Event() for _ in range(self.SLOTS)]  # synchronize() is a no-op before a record
        self.turn = 0

    def upload(self, parts: list[np.ndarray]) -> Tensor:
        slot, self.turn = self.turn, (self.turn + 1) % self.SLOTS
        self.copied[slot].synchronize()
        buffer = self.buffers[slot]
        host, at = buffer.numpy(), 0
        for part in parts:
            host[at:at + part.size] = part.reshape(-1)
            at += part.size
        with torch.cuda.device(self.device):
            on_device = buffer[:at].to(self.device, non_blocking=True)
            self.copied[slot].record()
        return on_device


def validation_stream(config: DataConfig, device: torch.device | str, documents: bool = False) -> TokenStream:
    """A stream at the start of the val shards, checked to hold ``val_tokens`` + 1 tokens."""
    files = find_shards(config.val_glob, "val")
    available = sum(read_header(f) for f in files)
    if available < config.val_tokens + 1:
        raise DataError(f"val shards {config.val_glob!r} hold {available} tokens; val_tokens={config.val_tokens} "
                         "needs more. Lower val_tokens or add val data.")
    return TokenStream(files, config.seq_len, config.batch_size, device, documents)
