"""``cavegpt speedrun``: FineWeb (downloaded when missing) → train to 3.28 → report → samples, in one go.

With no CUDA GPU, or when FineWeb is neither on disk nor downloadable, it runs the demo instead — the
``tiny`` preset on the sample corpus shipped in the package — and says so.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from cavegpt.config import Config, auto_preset_name, build_config
from cavegpt.data.fineweb import DEFAULT_DIR, download_fineweb, shards_needed
from cavegpt.data.loader import DataConfig
from cavegpt.data.shards import DataError
from cavegpt.infer.generate import CANNED_TEMPERATURES
from cavegpt.infer.load import load_model
from cavegpt.infer.standalone import run_prompts
from cavegpt.report.report import write_report
from cavegpt.train.trainer import RunResult, Trainer

TARGET_VAL_LOSS = 3.28
HOW_TO_GET_THE_REAL_ONE = ("For the real speedrun you need an NVIDIA GPU with >= 12 GB and internet access once: "
                           "cavegpt data fineweb, then cavegpt speedrun.")


@dataclass
class Plan:
    config: Config
    demo_reason: str | None  # why this is the demo; None for the real speedrun
    recipe_note: str | None = None  # what the run should know about the other recipe (real runs only)


def recipe_note(config: Config) -> str:
    """What a speedrun says about ``record``: what it is expected to save, and that its FineWeb time is a projection."""
    seed_tokens, record_tokens = build_config("seed", []).planned_tokens(), build_config("record", []).planned_tokens()
    facts = (f"`record` plans {record_tokens / 1e9:.2f}B tokens against the seed recipe's {seed_tokens / 1e9:.2f}B "
             f"({1 - record_tokens / seed_tokens:.0%} fewer). Published 8xH100 records with its ideas reached 3.28 "
             "in 0.43-0.57B tokens, so its time to 3.28 on FineWeb is a projection: cavegpt has not yet run it to "
             "the target, while the seed recipe reached 3.286.")
    if config.train.batch_ramp:
        return f"This is the `record` recipe. {facts}"
    return (f"A faster recipe exists: --preset record (record-24gb, record-16gb for smaller cards) adds later "
            f"speedrun records' ideas. {facts} The default stays the seed recipe until `record` is proven.")


def demo_plan(reason: str, overrides: list[str]) -> Plan:
    return Plan(build_config("tiny", overrides), f"{reason}. Running the DEMO: the tiny preset on the sample corpus "
                                                 f"shipped with cavegpt, not the speedrun. {HOW_TO_GET_THE_REAL_ONE}")


def plan(preset: str, overrides: list[str], say: Callable[[str], None] = print, has_gpu: bool | None = None) -> Plan:
    """Pick the preset and make sure its data is there (downloading FineWeb when the default path is empty).

    ``has_gpu``: whether to plan the real run (default: whether PyTorch sees a CUDA GPU).
    """
    if preset == "tiny":
        return demo_plan("--preset tiny", overrides)
    if not (torch.cuda.is_available() if has_gpu is None else has_gpu):
        return demo_plan("No CUDA GPU found", overrides)
    if preset == "auto":
        preset, why = auto_preset_name()
        say(why)
    config = build_config(preset, [f"target_val_loss={TARGET_VAL_LOSS}", *overrides])
    if glob.glob(config.data.train_glob) and glob.glob(config.data.val_glob):
        return Plan(config, None, recipe_note(config))
    if config.data.train_glob != DataConfig.train_glob:
        raise DataError(f"no shards match train_glob={config.data.train_glob!r} / val_glob={config.data.val_glob!r}")
    tokens = config.planned_tokens()
    train_shards = shards_needed(tokens)
    say(f"FineWeb is not in {DEFAULT_DIR}: downloading {train_shards} train shards and the val shard")
    try:
        download_fineweb(DEFAULT_DIR, train_shards)
    except DataError as e:
        return demo_plan(f"FineWeb could not be downloaded ({e})", overrides)
    return Plan(config, None, recipe_note(config))


class Tee:
    """Writes to several text streams at once (samples go to the terminal and to samples.txt)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> None:
        for stream in self.streams:
            stream.write(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def speedrun(preset: str, overrides: list[str], max_new_tokens: int, say: Callable[[str], None] = print,
             out: TextIO | None = None) -> tuple[Plan, RunResult]:
    """Run the whole thing; the run folder ends up with report.md, loss.png and samples.txt."""
    chosen = plan(preset, overrides, say)
    for line in (chosen.demo_reason, chosen.recipe_note):
        if line:
            say(line)
    trainer = Trainer(chosen.config)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if result.stopped:
        return chosen, result
    report, _, shown = write_report(result.run_dir, notes=[chosen.recipe_note] if chosen.recipe_note else [])
    say(f"\n{shown}\nreport: {report}\n")
    if result.checkpoint is not None:
        model, _ = load_model(result.checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
        with open(Path(result.run_dir) / "samples.txt", "w", encoding="utf-8") as samples:
            run_prompts(model, None, list(CANNED_TEMPERATURES), max_new_tokens, None, None, 0, 1,
                        out=Tee(out or sys.stdout, samples))
        say(f"samples: {result.run_dir / 'samples.txt'}")
    if chosen.demo_reason:
        say(f"This was the demo. {HOW_TO_GET_THE_REAL_ONE}")
    return chosen, result
