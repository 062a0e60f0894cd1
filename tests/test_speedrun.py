"""``cavegpt speedrun``: the demo end to end with no GPU; with one, FineWeb fetched when missing (stand-in hub)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cavegpt.data.fineweb import shard_names
from cavegpt.data.shards import write_shard
from cavegpt.infer.generate import CANNED_PROMPTS
from cavegpt.speedrun import plan
from tests.conftest import cavegpt
from tests.hubstub import StubHub


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, speedrun runs the real thing, not the demo")
def test_speedrun_without_a_gpu_runs_the_demo_end_to_end(tmp_path: Path) -> None:
    result = cavegpt("speedrun", "num_iterations=20", "cooldown_iters=7", "muon_momentum_warmup=3", "val_every=10",
                     f"log_dir={tmp_path}", "run_id=demo", "--max-new-tokens", "8", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "No CUDA GPU found. Running the DEMO" in result.stdout
    assert "This was the demo." in result.stdout.splitlines()[-1]
    run = tmp_path / "demo"
    assert {"report.md", "loss.png", "samples.txt", "config.json", "run.json", "metrics.jsonl"} <= \
        {p.name for p in run.iterdir()}
    assert "| Val loss | " in (run / "report.md").read_text()
    samples = (run / "samples.txt").read_text()
    assert all(prompt in samples for prompt in CANNED_PROMPTS)
    assert samples.count("--- temperature") == 3 * len(CANNED_PROMPTS)
    assert "sample_train_" in (run / "config.json").read_text()  # the corpus shipped in the package


def stub_shards(folder: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {name: write_shard(folder / name, rng.integers(0, 50257, size=300_000).astype(np.uint16)).read_bytes()
            for name in shard_names(1)}


def test_speedrun_downloads_missing_fineweb_then_plans_the_real_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = stub_shards(tmp_path / "served")
    with StubHub(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        chosen = plan("seed", ["num_iterations=10", "cooldown_iters=3", "muon_momentum_warmup=3"], say=lambda _: None,
                      has_gpu=True)
    assert chosen.demo_reason is None
    assert chosen.config.train.target_val_loss == 3.28 and chosen.config.model.d_model == 768
    # the recipes' planned tokens, not this 10-step run's: 1920 × 262,144 on average against 1750 × 524,288
    assert chosen.recipe_note.startswith("A faster recipe exists: --preset record")
    assert "`record` plans 0.50B tokens against the seed recipe's 0.92B (45% fewer)" in chosen.recipe_note
    assert "is a projection" in chosen.recipe_note
    for name, content in files.items():  # 10 steps of 524,288 tokens need one train shard and the val shard
        assert (tmp_path / "data" / "fineweb10B" / name).read_bytes() == content


def test_speedrun_falls_back_to_the_demo_when_fineweb_cannot_be_had(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with StubHub({}) as hub:  # a hub without the dataset's files
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        chosen = plan("seed", [], say=lambda _: None, has_gpu=True)
    assert chosen.demo_reason.startswith("FineWeb could not be downloaded (")
    assert "Running the DEMO" in chosen.demo_reason and chosen.config.model.d_model == 64


def test_a_record_speedrun_is_told_its_time_is_a_projection(tmp_path: Path) -> None:
    for name in ("fineweb_train_000001.bin", "fineweb_val_000000.bin"):
        (tmp_path / name).touch()
    globs = [f"train_glob={tmp_path}/fineweb_train_*.bin", f"val_glob={tmp_path}/fineweb_val_*.bin"]
    chosen = plan("record-24gb", globs, say=lambda _: None, has_gpu=True)
    assert chosen.recipe_note.startswith("This is the `record` recipe.") and "is a projection" in chosen.recipe_note
