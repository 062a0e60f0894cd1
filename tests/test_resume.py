"""Never lose a run: exact resume, clean stops, atomic saves, the NaN guard, clear refusals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cavegpt.cli import main
from cavegpt.config import ConfigError, build_config
from cavegpt.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cavegpt.train.guards import NonFiniteError
from cavegpt.train.resume import resume_point
from cavegpt.train.trainer import Trainer
from tests.conftest import cavegpt

# short sequences keep these runs to seconds on a CPU; the mechanics are the same at any size
STEPS = ["num_iterations=12", "cooldown_iters=4", "val_every=4", "muon_momentum_warmup=4", "seq_len=128",
         "val_tokens=1024"]


def tiny(tmp: Path, run_id: str, *extra: str):
    return build_config("tiny", [*STEPS, f"log_dir={tmp}", f"run_id={run_id}", *extra])


def train_losses(run_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {r["step"]: r["train_loss"] for r in records if r["kind"] == "train"}
    assert len(losses) == sum(r["kind"] == "train" for r in records)  # no step logged twice
    return losses


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    (path,) = run_dir.glob("checkpoint_step000012_loss*.pt")
    return load_checkpoint(path)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("logs")
    Trainer(tiny(logs, "straight", "checkpoint_every=6"), echo=False).run()
    return logs / "straight"


def test_stop_and_resume_is_bit_identical(straight: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "checkpoint_step000006.pt", resumed)  # as if the run had died after step 6
    config, point = resume_point(resumed)
    assert point[1]["progress"]["step"] == 6 and config.train.run_id == "resumed"
    Trainer(config, echo=False, resume_from=point).run()
    expected = train_losses(straight)
    assert train_losses(resumed) == {s: loss for s, loss in expected.items() if s > 6}
    assert_same_weights(final_weights(straight), final_weights(resumed))


def test_sigterm_to_a_real_run_then_resume_is_bit_identical(straight: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    args = [sys.executable, "-m", "cavegpt", "train", "--preset", "tiny", *STEPS, f"log_dir={tmp_path}", "run_id=sig"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stdout:  # wait until training is under way, then stop it the way `kill` would
        if line.startswith("step 5/12 | train_loss"):
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stderr
    assert "cavegpt resume" in stderr
    (checkpoint,) = (tmp_path / "sig").glob("checkpoint_step*.pt")
    stopped_at = load_checkpoint(checkpoint)["progress"]["step"]
    assert 5 <= stopped_at < 12

    result = cavegpt("resume", str(tmp_path / "sig"))
    assert result.returncode == 0, result.stderr
    log = (tmp_path / "sig" / "log.txt").read_text()
    assert f"stopped by SIGTERM at step {stopped_at}" in log and f"resumed from {checkpoint.name}" in log
    assert train_losses(tmp_path / "sig") == train_losses(straight)
    assert_same_weights(final_weights(straight), final_weights(tmp_path / "sig"))


def test_periodic_checkpoints_keep_the_last_k(straight: Path, tmp_path: Path) -> None:
    Trainer(tiny(tmp_path, "k", "checkpoint_every=2", "keep_checkpoints=2", "num_iterations=9", "cooldown_iters=3"),
            echo=False).run()
    names = sorted(p.name for p in (tmp_path / "k").glob("checkpoint_*.pt"))
    assert names[:2] == ["checkpoint_step000006.pt", "checkpoint_step000008.pt"]
    assert len(names) == 3 and names[2].startswith("checkpoint_step000009_loss")


def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    previous = save_checkpoint(tmp_path / "checkpoint_step000001.pt", {"step": 1})
    target = tmp_path / "checkpoint_step000002.pt"
    code = ("import sys, torch; from pathlib import Path; from cavegpt.train.checkpoint import save_checkpoint; "
            f"save_checkpoint(Path({str(target)!r}), {{'w': torch.ones(400_000_000, dtype=torch.uint8)}})")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    partial = target.with_name(target.name + ".partial")
    deadline = time.time() + 60
    while not (partial.exists() and partial.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.001)
    process.kill()
    process.wait()
    assert partial.exists() or target.exists()  # the kill landed during (or just after) the write
    assert not target.exists() or load_checkpoint(target)["w"].numel() == 400_000_000  # never a torn file
    assert load_checkpoint(previous)["step"] == 1


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_how_much(tmp_path: Path, monkeypatch) -> None:
    import cavegpt.train.checkpoint as checkpoint_module

    previous = save_checkpoint(tmp_path / "checkpoint_step000001.pt", {"step": 1})
    real_open = open
    # /dev/full answers every write with ENOSPC: a real full-disk error from the kernel
    monkeypatch.setattr(checkpoint_module, "open", lambda path, mode="r": real_open("/dev/full", mode), raising=False)
    with pytest.raises(CheckpointError, match=r"disk full while writing checkpoint_step000002.pt: needs about 5 MiB"):
        save_checkpoint(tmp_path / "checkpoint_step000002.pt", {"w": torch.ones(1_000_000)})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_step000001.pt"]
    assert load_checkpoint(previous)["step"] == 1


def test_too_little_space_is_refused_before_writing(tmp_path: Path, monkeypatch) -> None:
    import cavegpt.train.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 1000))
    with pytest.raises(CheckpointError, match="needs about 5 MiB, 0 MiB free"):
        save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(1_000_000)})
    assert list(tmp_path.iterdir()) == []


class PoisonAt(Trainer):
    """Injects a NaN at one step: into a weight (the loss goes bad) or into one group's gradient."""

    def __init__(self, *args, step: int, where: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.poison_step, self.where = step, where

    def train_step(self, step, guard=False):
        if step == self.poison_step:
            if self.where == "weight":
                with torch.no_grad():
                    self.model.blocks[1].mlp.c_fc.weight[0, 0] = float("nan")
            else:
                self.model.lm_head.weight.register_hook(lambda g: g * float("nan"))
        return super().train_step(step, guard)


@pytest.mark.parametrize("where,needle", [("weight", "step 3: the training loss is nan"),
                                          ("gradient", "step 3: non-finite gradient norm in parameter group(s) lm_head")])
def test_nan_is_caught_at_its_step(tmp_path: Path, where: str, needle: str) -> None:
    trainer = PoisonAt(tiny(tmp_path, "nan", "checkpoint_every=2"), echo=False, step=3, where=where)
    before = None
    with pytest.raises(NonFiniteError) as error:
        trainer.run()
    assert needle in str(error.value) and "checkpoint_step000002.pt" in str(error.value)
    before = load_checkpoint(tmp_path / "nan" / "checkpoint_step000002.pt")
    assert all(torch.isfinite(t).all() for t in before["model"].values())
    assert needle in (tmp_path / "nan" / "log.txt").read_text()
    if where == "gradient":  # the guard ran before the optimizer: weights are untouched by the bad step
        assert torch.isfinite(trainer.model.lm_head.weight).all()


def test_resume_refusals(straight: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run folder or checkpoint"):
        resume_point(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        resume_point(empty)
    other = tiny(tmp_path, "x", "d_model=128", "matrix_lr=0.02")
    with pytest.raises(ConfigError) as error:
        resume_point(straight / "checkpoint_step000006.pt", other)
    assert "model.d_model: 64 → 128" in str(error.value) and "optim.matrix_lr: 0.05 → 0.02" in str(error.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a cavegpt checkpoint"):
        resume_point(foreign)
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="not a readable cavegpt checkpoint"):
        resume_point(tmp_path / "junk.pt")
    code = tmp_path / "code.pt"
    torch.save({"format": "cavegpt-checkpoint-v1", "evil": Path("/")}, code)  # a pickled object, not data
    with pytest.raises(CheckpointError, match="not a readable cavegpt checkpoint"):
        load_checkpoint(code)


def test_cli_messages_for_resume_and_out_of_memory(tmp_path: Path, monkeypatch, capsys) -> None:
    assert main(["resume", str(tmp_path / "nope")]) == 2
    assert "no such run folder or checkpoint" in capsys.readouterr().err

    def out_of_memory(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.00 GiB")

    monkeypatch.setattr(Trainer, "run", out_of_memory)
    assert main(["train", "--preset", "tiny", f"log_dir={tmp_path}"]) == 2
    message = capsys.readouterr().err
    assert "record-24gb or record-16gb" in message and "seq_len=16384 grad_accum=32" in message


def test_record_options_resume_bit_identical(tmp_path: Path) -> None:
    """The batch ramp, multi-token weights, NorMuon's second moments and the bigram table all resume exactly."""
    record = ["batch_ramp=1,2,3", "stage_lr_multipliers=1,1.5,1.7", "mtp_weights=0.5,0.25", "lr_floor=0.1",
              "ns_coefficients=polar_express", "normuon_beta2=0.95", "muon_weight_decay=1.2", "bigram_vocab=1024",
              "logit_softcap=15"]
    Trainer(tiny(tmp_path, "straight", "checkpoint_every=6", *record), echo=False).run()
    straight = tmp_path / "straight"
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(straight / "checkpoint_step000006.pt", resumed)
    config, point = resume_point(resumed)
    assert config.train.batch_ramp == (1, 2, 3)
    Trainer(config, echo=False, resume_from=point).run()
    expected = train_losses(straight)
    assert train_losses(resumed) == {s: loss for s, loss in expected.items() if s > 6}
    assert_same_weights(final_weights(straight), final_weights(resumed))
    tokens = {r["step"]: r["tokens"] for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"}
    assert tokens[12] == 128 * (4 * 1 + 4 * 2 + 4 * 3)  # stages of 4 steps: 1, 2, 3 micro-batches of 128 tokens
