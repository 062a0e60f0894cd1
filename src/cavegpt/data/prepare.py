"""``cavegpt data prepare``: your own text → train/val shards in the FineWeb format.

Inputs are text files (one document each), folders of them, ``.jsonl`` (one document per line, in
a text field) and ``.parquet`` (a text column, read with pyarrow). Every document is written as
EOT 50256 followed by its GPT-2 tokens. Memory stays flat: documents stream through in batches and
each shard is written as soon as it fills.

The val split is by whole documents and does not depend on the input order within the run: a
first pass measures each document's size, a seeded permutation picks enough documents for
``val_tokens`` (sizes estimated from bytes), and the second pass sends the picked documents, in
input order, to val until it holds ``val_tokens + 1`` tokens (the loader reads one extra token);
the rest go to train. The same inputs and options give byte-identical shards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cavegpt.data.shards import DataError, write_shard
from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.model.masks import EOT_TOKEN

TEXT_SUFFIXES = {".txt", ".text", ".md", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".parquet"}
BYTES_PER_TOKEN_FLOOR = 4.5  # GPT-2 BPE on English prose is ~4.2–4.8 bytes/token: err towards more val docs
BATCH_BYTES = 4 << 20


def input_files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input {item!r} does not exist")
    if not files:
        raise DataError(f"no {', '.join(sorted(SUFFIXES))} files in {inputs}")
    return files


def documents(path: Path, text_field: str) -> Iterator[str]:
    """The non-empty documents of one input file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)[text_field]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f"{path}:{line_number}: not a JSON object with a {text_field!r} field") from None
                if text:
                    yield text
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
        parquet = pq.ParquetFile(path)
        if text_field not in parquet.schema_arrow.names:
            raise DataError(f"{path}: no column {text_field!r} (columns: {', '.join(parquet.schema_arrow.names)})")
        for batch in parquet.iter_batches(columns=[text_field]):
            yield from (text for text in batch.column(0).to_pylist() if text)
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield text


class ShardWriter:
    """Fills ``<name>_<split>_<k>.bin`` shards of ``shard_tokens`` tokens, writing each when full."""

    def __init__(self, out: Path, name: str, split: str, first_index: int, shard_tokens: int):
        self.out, self.name, self.split = out, name, split
        self.index, self.buffer, self.filled = first_index, np.empty(shard_tokens, dtype=np.uint16), 0
        self.written: list[str] = []
        self.tokens = self.documents = 0

    def add(self, tokens: np.ndarray) -> None:
        self.tokens += tokens.size
        self.documents += 1
        while tokens.size:
            take = min(tokens.size, self.buffer.size - self.filled)
            self.buffer[self.filled:self.filled + take] = tokens[:take]
            self.filled += take
            tokens = tokens[take:]
            if self.filled == self.buffer.size:
                self.flush()

    def flush(self) -> None:
        if self.filled:
            path = write_shard(self.out / f"{self.name}_{self.split}_{self.index:06d}.bin", self.buffer[:self.filled])
            self.written.append(path.name)
            self.index, self.filled = self.index + 1, 0


@dataclass
class PrepareReport:
    sources: list[dict] = field(default_factory=list)
    train: dict = field(default_factory=dict)
    val: dict = field(default_factory=dict)
    tokens_per_second: float = 0.0


def _batches(files: list[Path], text_field: str) -> Iterator[list[tuple[int, int, str]]]:
    """(file index, document index, text) in batches of about BATCH_BYTES."""
    batch, size, doc_index = [], 0, 0
    for file_index, path in enumerate(files):
        for text in documents(path, text_field):
            batch.append((file_index, doc_index, text))
            doc_index += 1
            size += len(text)
            if size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def prepare(inputs: list[str], out: str | Path, val_tokens: int = 10_485_760, shard_tokens: int = 100_000_000,
            text_field: str = "text", name: str = "text", seed: int = 1234, progress: bool = True) -> PrepareReport:
    files = input_files(inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [len(text.encode("utf-8")) for path in files for text in documents(path, text_field)]
    if len(sizes) < 2:
        raise DataError(f"found {len(sizes)} document(s); a train/val split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(sizes))
    estimated = np.cumsum(np.asarray(sizes)[order]) / BYTES_PER_TOKEN_FLOOR
    n_candidates = min(int(np.searchsorted(estimated, 1.2 * (val_tokens + 1))) + 1, len(sizes) - 1)
    val_candidates = set(order[:n_candidates].tolist())

    encoding = gpt2_encoding()
    train = ShardWriter(out, name, "train", 1, shard_tokens)
    val = ShardWriter(out, name, "val", 0, shard_tokens)
    sources = [{"path": str(p), "documents": 0, "tokens": 0} for p in files]
    start = time.perf_counter()
    total_tokens = 0
    with tqdm(total=sum(sizes), unit="B", unit_scale=True, desc="tokenizing", disable=not progress) as bar:
        for batch in _batches(files, text_field):
            encoded = encoding.encode_ordinary_batch([text for _, _, text in batch], num_threads=os.cpu_count() or 1)
            for (file_index, doc_index, text), ids in zip(batch, encoded):
                tokens = np.array([EOT_TOKEN, *ids], dtype=np.uint16)
                to_val = doc_index in val_candidates and val.tokens < val_tokens + 1
                (val if to_val else train).add(tokens)
                sources[file_index]["documents"] += 1
                sources[file_index]["tokens"] += tokens.size
                total_tokens += tokens.size
                bar.update(len(text.encode("utf-8")))
            bar.set_postfix_str(f"{total_tokens / (time.perf_counter() - start):,.0f} tokens/s")
    train.flush()
    val.flush()
    if val.tokens < val_tokens + 1:
        raise DataError(f"val got {val.tokens} tokens, fewer than --val-tokens {val_tokens} + 1; lower --val-tokens "
                        f"(the input holds {total_tokens} tokens)")
    if not train.tokens:
        raise DataError("every document went to val: add input or lower --val-tokens")

    report = PrepareReport(
        sources=sources,
        train={"shards": train.written, "documents": train.documents, "tokens": train.tokens},
        val={"shards": val.written, "documents": val.documents, "tokens": val.tokens},
        tokens_per_second=total_tokens / (time.perf_counter() - start),
    )
    record = {"tokenizer": "gpt2 (tiktoken r50k_base), EOT 50256 before every document", "seed": seed,
              "val_tokens_requested": val_tokens, "shard_tokens": shard_tokens, "text_field": text_field,
              **{k: v for k, v in asdict(report).items() if k != "tokens_per_second"}}
    (out / "dataset.json").write_text(json.dumps(record, indent=2) + "\n")
    return report
