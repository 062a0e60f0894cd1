"""``data prepare`` (text → shards) and ``data check`` (shards → verdict)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tiktoken

from cavegpt.data.check import check_shard, shard_paths
from cavegpt.data.prepare import prepare
from cavegpt.data.shards import DataError, ShardError, read_tokens, write_shard
from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.model.masks import EOT_TOKEN

WORDS = "the cave held a box of scraps and a small model learned to speak from them".split()


def make_documents(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(5, 400))).capitalize() + ".\nÜnïcode ✓ " + str(i)
            for i in range(n)]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, list[str]]:
    docs = make_documents(120, 0)
    folder = tmp_path / "in"
    (folder / "texts").mkdir(parents=True)
    for i, doc in enumerate(docs[:40]):
        (folder / "texts" / f"doc{i:03d}.txt").write_text(doc, encoding="utf-8")
    with open(folder / "more.jsonl", "w", encoding="utf-8") as f:
        for doc in docs[40:80]:
            f.write(json.dumps({"body": doc, "id": 1}) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"body": docs[80:]}), folder / "rest.parquet", row_group_size=7)
    return folder, docs


def documents_in(paths: list[Path]) -> list[str]:
    encoding = gpt2_encoding()
    tokens = np.concatenate([read_tokens(p) for p in paths])
    starts = np.flatnonzero(tokens == EOT_TOKEN)
    return [encoding.decode(tokens[a + 1:b].tolist()) for a, b in zip(starts, [*starts[1:], tokens.size])]


def test_round_trip_every_document_once(inputs, tmp_path: Path) -> None:
    folder, docs = inputs
    report = prepare([str(folder)], tmp_path / "out", val_tokens=2000, shard_tokens=3000, text_field="body",
                     progress=False)
    train = sorted((tmp_path / "out").glob("text_train_*.bin"))
    val = sorted((tmp_path / "out").glob("text_val_*.bin"))
    assert len(train) > 2 and train[0].name == "text_train_000001.bin" and val[0].name == "text_val_000000.bin"
    train_docs, val_docs = documents_in(train), documents_in(val)
    assert sorted(train_docs + val_docs) == sorted(docs)  # nothing lost, nothing doubled, text intact
    assert not set(train_docs) & set(val_docs)
    assert 2001 <= report.val["tokens"] < 2001 + 2000  # whole documents until val_tokens + 1
    record = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert record["train"]["tokens"] + record["val"]["tokens"] == sum(s["tokens"] for s in record["sources"])
    assert [s["documents"] for s in record["sources"]] == [40, 40] + [1] * 40  # more.jsonl, rest.parquet, texts/


def test_same_input_same_bytes(inputs, tmp_path: Path) -> None:
    folder, _ = inputs
    for run in ("a", "b"):
        prepare([str(folder)], tmp_path / run, val_tokens=2000, shard_tokens=3000, text_field="body", progress=False)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_val_split_depends_on_the_seed(inputs, tmp_path: Path) -> None:
    folder, _ = inputs
    picked = []
    for seed in (1, 2):
        prepare([str(folder)], tmp_path / str(seed), val_tokens=2000, text_field="body", seed=seed, progress=False)
        picked.append(set(documents_in(sorted((tmp_path / str(seed)).glob("text_val_*.bin")))))
    assert picked[0] != picked[1]


def tiktoken_has_r50k_base_offline() -> bool:
    """Whether tiktoken's cache (TIKTOKEN_CACHE_DIR, tests/conftest.py) holds r50k_base: tiktoken names the file
    by the SHA-1 of the address it would download from."""
    address = "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken"
    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR", ""))
    return (cache / hashlib.sha1(address.encode()).hexdigest()).is_file()


@pytest.mark.skipif(not tiktoken_has_r50k_base_offline(),
                    reason="no offline copy of tiktoken's r50k_base (../shared/tokenizer beside the repo, or "
                           "TIKTOKEN_CACHE_DIR), and the tests do not download")
def test_shipped_bpe_equals_tiktoken_r50k_base() -> None:
    text = "Hello world! <|endoftext|> naïve café 12345 \n\n  spaces"
    reference = tiktoken.get_encoding("r50k_base")  # offline through TIKTOKEN_CACHE_DIR (tests/conftest.py)
    assert gpt2_encoding().encode_ordinary(text) == reference.encode_ordinary(text)
    assert gpt2_encoding().eot_token == EOT_TOKEN == reference.eot_token


def test_prepare_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare([str(tmp_path / "nope")], tmp_path / "o", progress=False)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"other": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:2: not a JSON object with a 'text' field"):
        prepare([str(tmp_path / "bad.jsonl")], tmp_path / "o", progress=False)
    (tmp_path / "small.txt").write_text("just one small document")
    with pytest.raises(DataError, match="at least 2"):
        prepare([str(tmp_path / "small.txt")], tmp_path / "o", progress=False)


def good_shard(tmp_path: Path) -> Path:
    tokens = np.random.default_rng(0).integers(0, 50256, size=1000).astype(np.uint16)
    tokens[[0, 300, 700]] = EOT_TOKEN
    return write_shard(tmp_path / "good.bin", tokens)


def test_check_counts_documents(tmp_path: Path) -> None:
    report = check_shard(good_shard(tmp_path))
    assert (report.error, report.n_tokens, report.n_documents) == (None, 1000, 3)
    assert report.mean_document_length == pytest.approx(1000 / 3)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b"\x01\x02\x03\x04" + b[4:], "magic number 67305985 at byte 0"),
    (lambda b: b[:4] + (2).to_bytes(4, "little") + b[8:], "version 2 at byte 4"),
    (lambda b: b[:-2], "header says 1000 tokens (3024 bytes) but the file has 3022 bytes"),
    (lambda b: b + b"\0\0", "but the file has 3026 bytes"),
    (lambda b: b[:1024 + 2 * 17] + (50300).to_bytes(2, "little") + b[1024 + 2 * 18:], "token 50300 at byte 1058"),
    (lambda b: b[:10], "shorter than the 1024-byte header"),
])
def test_check_names_file_and_offset_for_each_failure(tmp_path: Path, damage, message: str) -> None:
    path = good_shard(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    report = check_shard(path)
    assert report.error is not None and message in report.error and "good.bin" in report.error
    with pytest.raises(ShardError, match="good.bin"):  # the loader refuses the same shard the same way
        read_tokens(path)


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good_shard(tmp_path)
    ok = subprocess.run([sys.executable, "-m", "cavegpt", "data", "check", str(tmp_path)], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "good.bin" in ok.stdout and "333.3" in ok.stdout
    (tmp_path / "bad.bin").write_bytes(b"not a shard at all")
    bad = subprocess.run([sys.executable, "-m", "cavegpt", "data", "check", str(tmp_path / "*.bin")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "bad.bin" in bad.stdout
    empty = subprocess.run([sys.executable, "-m", "cavegpt", "data", "check", str(tmp_path / "none*.bin")],
                           capture_output=True, text=True)
    assert empty.returncode == 2 and "no shards found" in empty.stderr
    with pytest.raises(DataError):
        shard_paths(str(tmp_path / "zzz"))


def test_shipped_sample_corpus_is_valid_and_licensed() -> None:
    from cavegpt.config import SAMPLE_CORPUS

    reports = [check_shard(p) for p in shard_paths(str(SAMPLE_CORPUS))]
    assert [r.error for r in reports] == [None, None]
    assert sum(r.n_tokens for r in reports) > 100_000
    assert "PYTHON SOFTWARE FOUNDATION LICENSE" in (SAMPLE_CORPUS / "LICENSE.md").read_text()
