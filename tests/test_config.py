"""Presets, key=value overrides and the errors for bad ones."""

from __future__ import annotations

import pytest

from cavegpt.config import PRESETS, ConfigError, build_config


def test_seed_preset_is_the_seed_recipe() -> None:
    config = build_config("seed", [])
    assert (config.model.n_layer, config.model.n_head, config.model.d_model, config.model.vocab_size) == (12, 6, 768, 50304)
    assert config.data.seq_len * config.data.batch_size * config.train.grad_accum == 524_288
    assert (config.train.num_iterations, config.optim.cooldown_iters, config.optim.warmup_iters) == (1750, 640, 0)
    assert (config.train.val_every, config.data.val_tokens) == (125, 10_485_760)
    assert (config.train.window_start, config.model.window) == (64, 1792)
    assert (config.optim.embed_lr, config.optim.head_lr, config.optim.matrix_lr, config.optim.scalar_lr) == (
        0.6, 0.008, 0.05, 0.04)
    assert (config.optim.muon_momentum_start, config.optim.muon_momentum, config.optim.muon_momentum_warmup) == (
        0.85, 0.95, 300)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_keeps_tokens_per_step(name: str) -> None:
    config = build_config(name, [])
    if name != "tiny":
        assert config.data.seq_len * config.data.batch_size * config.train.grad_accum == 524_288


def test_overrides_by_field_and_by_section() -> None:
    config = build_config("tiny", ["num_iterations=300", "model.d_model=128", "target_val_loss=3.28",
                                   "compile=false", "val_tokens=1_024"])
    assert config.train.num_iterations == 300
    assert config.model.d_model == 128
    assert config.train.target_val_loss == 3.28
    assert config.train.compile is False
    assert config.data.val_tokens == 1024
    assert build_config("tiny", ["target_val_loss=none"]).train.target_val_loss is None


def test_unknown_key_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as error:
        build_config("tiny", ["num_iteration=5"])
    message = str(error.value)
    assert "unknown config key 'num_iteration'" in message
    assert "num_iterations" in message and "seq_len" in message and "matrix_lr" in message


@pytest.mark.parametrize("override,needle", [
    ("num_iterations=ten", "bad value 'ten' for train.num_iterations (int)"),
    ("compile=maybe", "expected true or false"),
    ("seq_len=1000", "seq_len=1000 must be a positive multiple of 128"),
    ("n_layer=7", "must be even"),
    ("attention=cuda", "choose auto, flex or sdpa"),
    ("adam_beta1=1.5", "adam_beta1=1.5 must lie in [0, 1)"),
    ("cooldown_iters=500", "exceed num_iterations=200"),
    ("device=tpu", "choose auto, cuda or cpu"),
    ("seq_len", "is not key=value"),
])
def test_bad_values_are_refused_with_a_message(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        build_config("tiny", [override])
    assert needle in str(error.value)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="choose one of: seed, h100, 4090, 3090, 8xh100, tiny, auto"):
        build_config("a100", [])
