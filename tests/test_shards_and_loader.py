"""The shard format, the loader and synthetic shards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cavegpt.data.loader import DataConfig, PinnedStaging, TokenStream, find_shards, validation_stream
from cavegpt.data.shards import HEADER_BYTES, MAGIC, DataError, ShardError, read_header, read_tokens, write_shard
from cavegpt.data.synthetic import bench_overrides, synthetic_tokens, write_synthetic
from cavegpt.model.masks import EOT_TOKEN


def test_write_read_round_trip(tmp_path: Path) -> None:
    tokens = np.random.default_rng(0).integers(0, 50257, size=12345).astype(np.uint16)
    path = write_shard(tmp_path / "a.bin", tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size
    header = np.fromfile(path, dtype="<i4", count=3)
    assert header.tolist() == [MAGIC, 1, tokens.size]
    assert read_header(path) == tokens.size
    np.testing.assert_array_equal(read_tokens(path), tokens)
    assert not list(tmp_path.glob("*.partial"))


def test_bad_shards_are_refused_with_the_reason(tmp_path: Path) -> None:
    good = write_shard(tmp_path / "good.bin", np.arange(100, dtype=np.uint16))
    data = good.read_bytes()
    (tmp_path / "magic.bin").write_bytes(b"\x00" * 4 + data[4:])
    (tmp_path / "short.bin").write_bytes(data[:-10])
    (tmp_path / "tiny.bin").write_bytes(data[:100])
    with pytest.raises(ShardError, match="magic number 0 at byte 0"):
        read_header(tmp_path / "magic.bin")
    with pytest.raises(ShardError, match="truncated"):
        read_header(tmp_path / "short.bin")
    with pytest.raises(ShardError, match="shorter than the 1024-byte header"):
        read_header(tmp_path / "tiny.bin")
    with pytest.raises(ShardError, match="cannot read"):
        read_header(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="uint16"):
        write_shard(tmp_path / "big.bin", np.array([70000]))


def test_stream_shifts_targets_and_loops_over_shards(tmp_path: Path) -> None:
    write_shard(tmp_path / "s_1.bin", np.arange(0, 50, dtype=np.uint16))
    write_shard(tmp_path / "s_2.bin", np.arange(100, 130, dtype=np.uint16))
    stream = TokenStream(find_shards(str(tmp_path / "s_*.bin"), "train"), seq_len=8, batch_size=2)
    seen = []
    for _ in range(6):
        x, y, documents = stream.next_batch()
        assert documents is None  # asked for with documents=True only
        assert x.shape == y.shape == (2, 8)
        assert (x.flatten()[1:] == y.flatten()[:-1]).all()  # y is x shifted by one token
        seen.append(x[0, 0].item())
    # 50 tokens hold batches at 0, 16, 32 (32 + 17 <= 50); 30 tokens hold one at 100; then loop
    assert seen == [0, 16, 32, 100, 0, 16]
    assert stream.position == (0, 32)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: only there do batches go through "
                    "page-locked staging buffers")
@pytest.mark.parametrize("documents", [False, True])
def test_gpu_batches_are_the_cpu_ones_while_the_staging_buffers_go_round(tmp_path: Path, documents: bool) -> None:
    rng = np.random.default_rng(0)
    write_shard(tmp_path / "s_1.bin", synthetic_tokens(40_000, 50.0, rng))
    files = find_shards(str(tmp_path / "s_*.bin"), "train")
    on_cpu = TokenStream(files, seq_len=1024, batch_size=2, documents=documents)
    on_gpu = TokenStream(files, seq_len=1024, batch_size=2, device="cuda", documents=documents)
    torch.cuda._sleep(100_000_000)  # a busy GPU: the batches below are sent while earlier copies still wait
    batches = [on_gpu.next_batch() for _ in range(3 * PinnedStaging.SLOTS)]
    for got, expected in zip(batches, (on_cpu.next_batch() for _ in batches)):
        assert got.inputs.dtype == got.targets.dtype == torch.int64
        assert torch.equal(got.inputs.cpu(), expected.inputs) and torch.equal(got.targets.cpu(), expected.targets)
        if documents:
            assert got.documents.cu_seqlens.dtype == torch.int32
            assert torch.equal(got.documents.cu_seqlens.cpu(), expected.documents.cu_seqlens)
            assert got.documents.cu_seqlens.data_ptr() % 16 == 0  # FA4's alignment
            assert torch.equal(got.documents.sizes, expected.documents.sizes)


def test_missing_data_gives_a_helpful_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cavegpt data synthetic"):
        find_shards(str(tmp_path / "nothing_*.bin"), "train")
    write_shard(tmp_path / "v_0.bin", np.arange(100, dtype=np.uint16))
    config = DataConfig(val_glob=str(tmp_path / "v_*.bin"), seq_len=128, val_tokens=256)
    with pytest.raises(DataError, match="hold 100 tokens; val_tokens=256 needs more"):
        validation_stream(config, "cpu")
    write_shard(tmp_path / "v_1.bin", np.arange(200, dtype=np.uint16))
    config.val_tokens = 128
    with pytest.raises(DataError, match="v_0.bin: 100 tokens, fewer than one batch needs"):
        validation_stream(config, "cpu")


def test_synthetic_documents_have_the_asked_mean_length(tmp_path: Path) -> None:
    tokens = synthetic_tokens(2_000_000, 1000.0, np.random.default_rng(0))
    n_docs = int((tokens == EOT_TOKEN).sum())
    assert 1500 < n_docs < 2500  # mean length ≈ 1000
    assert tokens.max() <= EOT_TOKEN
    files = write_synthetic(tmp_path, train_shards=2, shard_tokens=5000, val_tokens=3000, progress=False)
    assert [f.name for f in files] == ["synthetic_val_000000.bin", "synthetic_train_000001.bin",
                                       "synthetic_train_000002.bin"]
    assert [read_header(f) for f in files] == [3000, 5000, 5000]


def test_bench_shards_hold_what_a_bench_config_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`cavegpt bench --synthetic` and the GPU scripts: one 20M-token train shard, a val shard one token longer
    than the 1,048,576 validation tokens (the targets' shift), in a folder that goes when the run ends."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with bench_overrides() as (train, val, tokens):
        assert train.startswith(f"train_glob={tmp_path}")
        config = DataConfig(train_glob=train.split("=", 1)[1], val_glob=val.split("=", 1)[1],
                            val_tokens=int(tokens.split("=", 1)[1]))
        (train_shard,), (val_shard,) = find_shards(config.train_glob, "train"), find_shards(config.val_glob, "val")
        assert read_header(train_shard) == 20_000_000
        assert read_header(val_shard) == config.val_tokens + 1
    assert not list(tmp_path.iterdir())
