"""``cavegpt data fineweb`` against a stand-in hub on 127.0.0.1 (the real huggingface_hub client)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cavegpt.data.fineweb import shard_names, shards_needed
from cavegpt.data.shards import read_tokens, write_shard
from tests.hubstub import StubHub


@pytest.fixture
def shard_bytes(tmp_path: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for name in shard_names(2):
        path = write_shard(tmp_path / "src" / name, rng.integers(0, 50257, size=300_000).astype(np.uint16))
        files[name] = path.read_bytes()
    return files


def fineweb(out: Path, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(out.parent / "hf-home")}
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "cavegpt", "data", "fineweb", "--train-shards", "2", "--dir",
                           str(out), *extra], capture_output=True, text=True, env=env, timeout=300)


def assert_same_files(out: Path, files: dict[str, bytes]) -> None:
    assert sorted(p.name for p in out.glob("*.bin")) == sorted(files)
    for name, content in files.items():
        assert (out / name).read_bytes() == content


def test_default_shard_count_covers_the_seed() -> None:
    assert shards_needed(1750 * 524_288) == 10
    assert shard_names(2) == ["fineweb_val_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]


def test_fresh_download_then_skip(tmp_path: Path, shard_bytes: dict[str, bytes]) -> None:
    out = tmp_path / "fineweb"
    with StubHub(shard_bytes) as hub:
        result = fineweb(out, hub.url)
        assert result.returncode == 0, result.stderr
        assert_same_files(out, shard_bytes)
        assert all(len(hub.gets(name)) == 1 for name in shard_bytes)
        hub.requests.clear()
        again = fineweb(out, hub.url)
        assert again.returncode == 0, again.stderr
        assert hub.requests == []  # complete shards are checked locally and skipped
        assert "3 already complete" in again.stdout


def test_resume_after_the_server_drops_the_connection(tmp_path: Path, shard_bytes: dict[str, bytes]) -> None:
    out = tmp_path / "fineweb"
    name = "fineweb_train_000001.bin"
    # huggingface_hub keeps what it has in 10 MB chunks: make the drop land past the first one
    big = np.random.default_rng(1).integers(0, 50257, size=8_000_000).astype(np.uint16)
    shard_bytes[name] = write_shard(tmp_path / "big" / name, big).read_bytes()
    with StubHub(shard_bytes) as hub:
        hub.drop_once.add(name)
        result = fineweb(out, hub.url)
        assert result.returncode == 0, result.stderr
        ranges = hub.gets(name)
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))  # resumed, not restarted
    assert 0 < resumed_at <= len(shard_bytes[name]) * 3 // 4
    assert_same_files(out, shard_bytes)


def test_corrupt_shard_is_detected_and_fetched_again(tmp_path: Path, shard_bytes: dict[str, bytes]) -> None:
    out = tmp_path / "fineweb"
    name = "fineweb_val_000000.bin"
    with StubHub(shard_bytes) as hub:
        hub.corrupt_once.add(name)
        result = fineweb(out, hub.url)
        assert result.returncode == 0, result.stderr
        assert len(hub.gets(name)) == 2
    assert "1 re-fetched after a failed check" in result.stdout
    assert_same_files(out, shard_bytes)
    read_tokens(out / name)


def test_corrupt_file_on_disk_is_replaced(tmp_path: Path, shard_bytes: dict[str, bytes]) -> None:
    out = tmp_path / "fineweb"
    out.mkdir()
    name = "fineweb_train_000002.bin"
    (out / name).write_bytes(shard_bytes[name][:5000])  # a truncated leftover
    with StubHub(shard_bytes) as hub:
        result = fineweb(out, hub.url)
    assert result.returncode == 0, result.stderr
    assert_same_files(out, shard_bytes)


def test_a_shard_bad_twice_is_reported(tmp_path: Path, shard_bytes: dict[str, bytes]) -> None:
    name = "fineweb_train_000001.bin"
    shard_bytes[name] = b"\0" * len(shard_bytes[name])  # the hub itself holds a broken file
    with StubHub(shard_bytes) as hub:
        result = fineweb(tmp_path / "fineweb", hub.url)
    assert result.returncode == 2
    assert f"{name} failed its check twice" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "fineweb" / name).exists()


def test_no_server_gives_one_clear_sentence(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = fineweb(tmp_path / "fineweb", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert "Could not download from the Hugging Face hub at http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "fineweb").glob("*.bin"))


def test_offline_mode_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run([sys.executable, "-m", "cavegpt", "data", "fineweb", "--train-shards", "1", "--dir",
                             str(tmp_path / "fw")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "HF_HUB_OFFLINE is set" in result.stderr and "Traceback" not in result.stderr
