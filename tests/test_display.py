"""Live progress (bar on a terminal, lines elsewhere) and the optional metric trackers."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

from cavegpt.train.display import LiveDisplay, duration
from cavegpt.train.loggers import LoggerUnavailable, TensorBoardSink, WandbSink, numeric_fields


def record(step: int, loss: float, time_ms: float, mfu: float | None = 0.4) -> dict:
    return {"kind": "train", "step": step, "train_loss": loss, "train_time_ms": time_ms,
            "tokens_per_second": 400_000.0, "mfu": mfu}


def test_duration_reads_like_a_clock() -> None:
    assert [duration(s) for s in (3.44, 123, 3723, float("nan"))] == ["3.4s", "2m03s", "1h02m03s", "?"]


def test_eta_counts_remaining_steps_and_validations() -> None:
    display = LiveDisplay(total=100, start_step=0, start_time_ms=0, val_every=25, target=None,
                          file=io.StringIO(), tty=False)
    display.validated(0, 10.0, seconds=2.0)
    # 10 steps in 5 s → 0.5 s/step; 90 steps left; validations left at 25, 50, 75 and the end: 4 × 2 s
    assert display.eta_seconds(10, 5000) == pytest.approx(90 * 0.5 + 4 * 2.0)


def test_plain_lines_carry_every_field() -> None:
    out = io.StringIO()
    display = LiveDisplay(total=1750, start_step=0, start_time_ms=0, val_every=125, target=3.28, file=out, tty=False)
    display.update(record(100, 4.1234, 60_000))
    display.validated(125, 3.9, seconds=3.0)
    display.target_reached(125, 75_000)
    display.write("an event")
    display.update(record(126, 3.8, 75_600))
    lines = out.getvalue().splitlines()
    assert lines[0] == ("step 100/1750 | train_loss 4.1234 | 400,000 tok/s | MFU 40.0% | train 1m00s | "
                        "ETA 16m30s | target 3.28 not yet")  # 1650 steps × 0.6 s, no val timed yet
    assert lines[1] == "an event"
    assert lines[2].startswith("step 126/1750 | train_loss 3.8000 | val_loss 3.9000 @125 |")
    assert lines[2].endswith("| target 3.28 reached at step 125, 1m15s")


def test_terminal_gets_a_bar_with_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # the bar is cut to the terminal's width (pytest-xdist's workers see 80)
    out = io.StringIO()
    display = LiveDisplay(total=200, start_step=50, start_time_ms=10_000, val_every=0, target=None, file=out, tty=True)
    display.update(record(60, 5.5, 20_000, mfu=None))
    display.write("step:60/200 val_loss:5.4000")
    display.close()
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    assert "60/200" in text and "train_loss 5.5000" in text and "400,000 tok/s" in text and "ETA" in text
    assert "MFU" not in text  # no GPU peak: no MFU rather than a made-up one
    assert "step:60/200 val_loss:5.4000\n" in text


def test_numeric_fields_keep_numbers_under_their_kind() -> None:
    fields = numeric_fields({"kind": "val", "step": 5, "val_loss": 3.5, "lr": {"a": 1}, "flag": True, "n": 7})
    assert fields == {"val/val_loss": 3.5, "val/n": 7.0}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_sink_writes_events_tensorboard_reads_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path)
    sink.log({"kind": "train", "step": 1, "train_loss": 9.5})
    sink.log({"kind": "train", "step": 2, "train_loss": 8.25})
    sink.log({"kind": "val", "step": 2, "val_loss": 8.5})
    sink.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/train_loss")] == [(1, 9.5), (2, 8.25)]
    assert [(e.step, e.value) for e in events.Scalars("val/val_loss")] == [(2, 8.5)]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_the_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LoggerUnavailable, match="pip install wandb"):
        WandbSink(tmp_path, {})
