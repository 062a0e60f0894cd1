"""``cavegpt speedrun`` with no GPU: the demo, end to end, saying plainly that it is the demo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cavegpt.infer.generate import CANNED_PROMPTS
from tests.conftest import cavegpt


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
