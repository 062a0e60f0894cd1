"""report.md, loss.png and --compare, from real runs of the tiny preset; the MFU terms against brute force."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cavegpt.model.masks import EOT_TOKEN, dense_mask, document_ids
from cavegpt.report.environment import PACKAGE_DIR, command_line
from cavegpt.report.mfu import mean_attended_keys
from cavegpt.report.plot import plot_runs
from cavegpt.report.report import leaderboard_fields, write_report
from cavegpt.report.runs import RunFolderError, load_run
from tests.conftest import TinyRun, cavegpt, textmix_overrides

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def records(folder: Path, kind: str) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_train_leaves_a_report_with_every_leaderboard_field(tiny_run: TinyRun) -> None:
    report = (tiny_run.folder / "report.md").read_text()
    val = records(tiny_run.folder, "val")
    final = val[-1]
    # the seed's leaderboard: hardware, time from step 0 to final val, tokens, final val loss @ step, command
    for needle in ("| Rank | Trainer | Hardware | Tokens Trained | Val Loss | Time to Target | Throughput |",
                   "| Hardware | CPU", "validation excluded |", "validation included |",
                   f"| Val loss | {final['val_loss']:.4f} @ step 200 |", f"| Tokens trained | {final['tokens']:,} ({final['tokens'] / 1e9:.3g}B) |",
                   "| Throughput | ", "| Command | `cavegpt train --preset tiny ", "| cavegpt commit | ",
                   f"| PyTorch | {torch.__version__}", "| Target val loss | none set"):
        assert needle in report, needle
    assert final["tokens"] == 200 * 512
    assert final["wall_time_ms"] == pytest.approx(final["train_time_ms"] + final["val_time_ms"])


def test_metrics_have_a_record_per_logged_step_and_per_validation(tiny_run: TinyRun) -> None:
    train = records(tiny_run.folder, "train")
    assert [r["step"] for r in train] == list(range(10, 201, 10))
    assert [r["step"] for r in records(tiny_run.folder, "val")] == [0, 50, 100, 150, 200]
    for key in ("tokens", "train_loss", "lr", "lr_multiplier", "window", "train_time_ms", "tokens_per_second"):
        assert key in train[-1], key
    assert train[-1]["lr_multiplier"] == pytest.approx(1 / 73, abs=1e-9)  # the last cooldown step
    assert train[-1]["lr"]["matrices"] == pytest.approx(0.05 / 73)
    assert train[-1]["tokens_per_second"] > 0 and train[-1]["mfu"] is None  # no GPU peak to divide by


def test_progress_falls_back_to_plain_lines_without_a_terminal(tiny_run: TinyRun) -> None:
    out = tiny_run.stdout
    assert "\r" not in out  # no bar redraws
    line = re.search(r"^step 200/200 \| train_loss \d+\.\d{4} \| val_loss \d+\.\d{4} @150 \| [\d,]+ tok/s \| "
                     r"train [\dms.]+ \| ETA [\dms.]+$", out, re.M)
    assert line, out[-2000:]
    assert "step:200/200 val_loss:" in out  # validation events are shown too


def test_loss_plot_holds_the_runs_data(tiny_run: TinyRun, tmp_path: Path) -> None:
    assert (tiny_run.folder / "loss.png").read_bytes()[:8] == PNG_SIGNATURE
    run = load_run(tiny_run.folder)
    run.config["train"]["target_val_loss"] = 6.5
    figure = plot_runs([run], tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_SIGNATURE
    by_step, by_time = figure.axes
    lines = {line.get_label(): line for line in by_step.get_lines()}
    assert set(lines) == {"train", "train (EMA)", "val", "cooldown starts", "target 6.5"}
    val = records(tiny_run.folder, "val")
    np.testing.assert_array_equal(lines["val"].get_xdata(), [r["step"] for r in val])
    np.testing.assert_array_equal(lines["val"].get_ydata(), [r["val_loss"] for r in val])
    np.testing.assert_array_equal(lines["train"].get_ydata(), [r["train_loss"] for r in records(tiny_run.folder, "train")])
    assert list(lines["cooldown starts"].get_xdata()) == [200 - 73] * 2
    assert list(lines["target 6.5"].get_ydata()) == [6.5] * 2
    time_lines = {line.get_label(): line for line in by_time.get_lines()}
    per_unit_ms = 60000 if "minutes" in by_time.get_xlabel() else 1000  # minutes for runs over 2 minutes
    assert (per_unit_ms == 60000) == (records(tiny_run.folder, "train")[-1]["train_time_ms"] >= 120_000)
    np.testing.assert_allclose(time_lines["val"].get_xdata(), [r["train_time_ms"] / per_unit_ms for r in val])


def test_target_fields_name_the_crossing_validation(tiny_run: TinyRun) -> None:
    run = load_run(tiny_run.folder)
    val = records(tiny_run.folder, "val")
    target = val[2]["val_loss"] + 1e-6  # crossed at step 100
    run.config["train"]["target_val_loss"] = target
    fields = leaderboard_fields(run)
    assert fields["Target val loss"] == f"{target}: reached at step 100"
    assert fields["Val loss"] == f"{val[2]['val_loss']:.4f} @ step 100"
    assert "Time to target, validation excluded" in fields


def test_compare_overlays_runs_and_prints_a_table(tiny_run: TinyRun, tmp_path: Path, textmix: Path) -> None:
    other = cavegpt("train", "--preset", "tiny", *textmix_overrides(textmix), f"log_dir={tmp_path}", "run_id=short",
                    "num_iterations=20", "cooldown_iters=7", "muon_momentum_warmup=3", "val_every=10",
                    "seq_len=128", "val_tokens=2048", "save_checkpoint=false")
    assert other.returncode == 0, other.stderr
    result = cavegpt("report", str(tmp_path / "short"), "--compare", str(tiny_run.folder))
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\| \| short \| tiny \|$", result.stdout, re.M), result.stdout
    assert re.search(r"^\| Val loss \| \d\.\d{4} @ step 20 \| \d\.\d{4} @ step 200 \|$", result.stdout, re.M)
    assert (tmp_path / "short" / "compare.png").read_bytes()[:8] == PNG_SIGNATURE
    figure = plot_runs([load_run(tmp_path / "short"), load_run(tiny_run.folder)], tmp_path / "c.png")
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert {"short train", "short val", "tiny train", "tiny val"} <= set(labels)
    assert "## Comparison" in (tmp_path / "short" / "report.md").read_text()


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no config.json"):
        write_report(tmp_path)
    result = cavegpt("report", str(tmp_path / "missing"))
    assert result.returncode == 2 and "is not a folder" in result.stderr and "Traceback" not in result.stderr


def test_command_line_reads_as_typed() -> None:
    assert command_line(["/x/bin/cavegpt", "train", "a=b c"]) == "cavegpt train 'a=b c'"
    assert command_line(["/x/cavegpt/__main__.py", "bench"]) == "cavegpt bench"


@pytest.mark.parametrize("window", [1, 7, 64, 10_000])
def test_mean_attended_keys_counts_the_mask(window: int) -> None:
    generator = torch.Generator().manual_seed(window)
    tokens = torch.randint(0, 50257, (2, 300), generator=generator)
    tokens[:, ::37] = EOT_TOKEN
    expected = dense_mask(document_ids(tokens), torch.tensor(window)).sum(-1).double().mean().item()
    assert mean_attended_keys(tokens.numpy(), window) == pytest.approx(expected)


def test_the_commit_is_cavegpts_own_and_the_users_repository_is_labelled_as_theirs(tmp_path: Path) -> None:
    """cavegpt installed into a virtual environment inside the user's git repository must not report that
    repository's commit as its own (it did: git ran in the package's folder and found the user's repository)."""
    project = tmp_path / "project"
    site = project / ".venv" / "site-packages"
    shutil.copytree(PACKAGE_DIR, site / "cavegpt", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".gitignore").write_text(".venv/\n")
    git = ["git", "-c", "user.name=you", "-c", "user.email=you@example.com"]
    for command in (["init", "-q"], ["add", ".gitignore"], ["commit", "-q", "-m", "the user's project"]):
        subprocess.run([*git, *command], cwd=project, check=True)
    theirs = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    code = "from cavegpt.report.environment import source_commit, user_commit; print(source_commit()); print(user_commit())"
    done = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)})
    ours, user = done.stdout.strip().splitlines()
    assert ours.startswith("unknown (cavegpt ") and theirs not in ours, done.stderr
    assert user == theirs
    here = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE_DIR, capture_output=True, text=True).stdout
    if (PACKAGE_DIR.parent.parent / ".git").exists():  # run from cavegpt's own checkout: its commit, no user's
        assert here.splitlines()[1] == "None" and not here.startswith("unknown")


def test_notes_get_a_section_of_their_own(tiny_run: TinyRun, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_run.folder, tmp_path / "run"))
    report, _, _ = write_report(folder, notes=["A faster recipe exists: --preset record."])
    text = report.read_text()
    assert text.endswith("## Notes\n\n- A faster recipe exists: --preset record.\n")
    assert "## Notes" not in write_report(folder)[0].read_text()
