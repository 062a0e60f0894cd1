"""Shared fixtures: the offline tokenizer, the textmix shards, small configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
TEXTMIX = SHARED / "data" / "textmix"

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tokenizer"))


@pytest.fixture
def textmix() -> Path:
    if not (TEXTMIX / "textmix_val_000000.bin").exists():
        pytest.skip(f"textmix shards not found at {TEXTMIX} (they sit in ../shared beside the repo)")
    return TEXTMIX


def textmix_overrides(folder: Path) -> list[str]:
    return [f"train_glob={folder}/textmix_train_*.bin", f"val_glob={folder}/textmix_val_*.bin"]
