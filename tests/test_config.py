"""Presets, key=value overrides and the errors for bad ones."""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest

from cavegpt.config import (PRESETS, Config, ConfigError, auto_preset_name, build_config, config_from_dict, differences,
                            in_micro_batches, record_recipe, seed_layout)
from cavegpt.optim.schedules import tokens_before


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
    if name not in ("tiny", "record", "record-24gb"):
        assert config.data.seq_len * config.data.batch_size * config.train.grad_accum == 524_288


def test_record_presets_share_every_step_and_differ_from_seed_only_in_record_options() -> None:
    record = build_config("record", [])
    assert (record.data.seq_len, record.train.batch_ramp, record.model.max_seq_len) == (131072, (1, 2, 3), 131072)
    assert record.planned_tokens() == 640 * (4 + 8 + 12) * 32768  # 0.50B: three stages of 640 steps
    seed = seed_layout(131072)
    changed = {f"{section}.{key}" for section in Config.SECTIONS
               for key, value in vars(getattr(record, section)).items() if getattr(getattr(seed, section), key) != value}
    assert changed == {"model.bigram_vocab", "model.logit_softcap", "model.no_attention_layers",
                       "model.no_mlp_layers", "model.short_window_layers", "train.num_iterations", "train.batch_ramp",
                       "train.mtp_weights", "optim.stage_lr_multipliers", "optim.cooldown_iters", "optim.lr_floor",
                       "optim.matrix_lr", "optim.ns_coefficients", "optim.normuon_beta2", "optim.muon_weight_decay"}


@pytest.mark.parametrize("seq_len", [8192, 65536, 131072])
def test_in_micro_batches_keeps_every_stage_tokens_and_grows_the_rotary_table(seq_len: int) -> None:
    recipe = record_recipe()
    moved = in_micro_batches(record_recipe(), seq_len)
    assert [n * moved.data.seq_len for n in moved.train.batch_ramp] == \
        [n * recipe.data.seq_len for n in recipe.train.batch_ramp]
    assert moved.train.grad_accum * seq_len == recipe.train.grad_accum * recipe.data.seq_len
    assert moved.model.max_seq_len == max(recipe.model.max_seq_len, seq_len)
    moved.validate()


def test_in_micro_batches_refuses_a_split_that_is_not_whole() -> None:
    with pytest.raises(ConfigError, match="do not split into micro-batches of 262144"):
        in_micro_batches(record_recipe(), 262144)  # the first stage's 4 × 32,768 is half of one


def test_batch_ramp_and_stage_rates_must_name_the_same_stages() -> None:
    with pytest.raises(ConfigError, match="must name the same number of stages"):
        build_config("tiny", ["batch_ramp=1,2", "stage_lr_multipliers=1,2,3"])


def test_tuple_settings_parse_and_survive_a_json_round_trip() -> None:
    config = build_config("tiny", ["batch_ramp=1,2", "stage_lr_multipliers=(1, 1.5)", "mtp_weights=0.5"])
    assert config.train.batch_ramp == (1, 2) and config.optim.stage_lr_multipliers == (1.0, 1.5)
    assert config.train.mtp_weights == (0.5,)
    again = config_from_dict(json.loads(config.to_json()), "config.json")
    assert again == config and differences(config, again) == []


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
    ("attention=cuda", "choose one of auto, fa4, flex, sdpa"),
    ("adam_beta1=1.5", "adam_beta1=1.5 must lie in [0, 1)"),
    ("cooldown_iters=500", "exceed num_iterations=200"),
    ("device=tpu", "choose auto, cuda or cpu"),
    ("seq_len", "is not key=value"),
    ("batch_ramp=1,0", "batch_ramp=(1, 0) must be >= 1"),
    ("ns_coefficients=cubic", "choose one of quintic, polar_express"),
    ("bigram_vocab=1", "0 (off) or at least 2 rows"),
    ("seq_len=8192", "data.seq_len=8192 exceeds model.max_seq_len=4096, the rotary table's length"),
])
def test_bad_values_are_refused_with_a_message(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        build_config("tiny", [override])
    assert needle in str(error.value)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="choose one of: seed, h100, 4090, 3090, 8xh100, record, record-24gb, 16gb, "
                                          "record-16gb, 12gb, tiny, auto"):
        build_config("a100", [])


class FakeCard(NamedTuple):
    name: str
    total_memory: int  # bytes, as torch.cuda.get_device_properties reports them
    major: int
    minor: int


@pytest.mark.parametrize("card, preset", [
    (FakeCard("NVIDIA H100 80GB HBM3", 85_520_809_984, 9, 0), "h100"),
    (FakeCard("NVIDIA H200", 150_754_820_096, 9, 0), "h100"),
    (FakeCard("NVIDIA RTX 6000 Ada Generation", 51_010_207_744, 8, 9), "4090"),
    (FakeCard("NVIDIA RTX A6000", 51_050_250_240, 8, 6), "3090"),
    (FakeCard("NVIDIA GeForce RTX 4090", 25_386_352_640, 8, 9), "4090"),
    (FakeCard("NVIDIA GeForce RTX 3090", 25_438_126_080, 8, 6), "3090"),
    (FakeCard("NVIDIA GeForce RTX 4080", 16_852_254_720, 8, 9), "16gb"),
    (FakeCard("NVIDIA GeForce RTX 5070 Ti", 16_605_511_680, 12, 0), "16gb"),
    (FakeCard("NVIDIA GeForce RTX 3060", 12_622_168_064, 8, 6), "12gb"),
])
def test_auto_picks_the_largest_layout_that_fits_the_card(card: FakeCard, preset: str) -> None:
    name, why = auto_preset_name(card)
    assert name == preset
    assert card.name in why and f"'{preset}'" in why and f"sm_{card.major}{card.minor}" in why
    config = build_config(name, [])
    assert config.data.micro_batch_tokens * config.train.grad_accum == 524288  # the seed's step, whatever the card
    assert config.train.batch_ramp == ()  # the seed's recipe, not record's


def test_auto_refuses_an_8gb_card_with_the_reason() -> None:
    with pytest.raises(ConfigError, match=r"RTX 4060 has 7\.6 GiB; the smallest speedrun preset \('12gb'\)"):
        auto_preset_name(FakeCard("NVIDIA GeForce RTX 4060", 8_188_002_304, 8, 9))


@pytest.mark.parametrize("card_preset, reference", [("h100", "seed"), ("16gb", "seed"), ("12gb", "seed"),
                                                   ("record-16gb", "record"), ("record-24gb", "record")])
def test_card_presets_change_only_the_layout(card_preset: str, reference: str) -> None:
    a, b = build_config(card_preset, []), build_config(reference, [])
    steps = b.train.num_iterations
    assert tokens_before(steps, a.train.grad_accum, a.train.batch_ramp, a.data.micro_batch_tokens) == \
        tokens_before(steps, b.train.grad_accum, b.train.batch_ramp, b.data.micro_batch_tokens)
    a.data.seq_len, a.train.grad_accum, a.train.batch_ramp = b.data.seq_len, b.train.grad_accum, b.train.batch_ramp
    a.model.max_seq_len = b.model.max_seq_len  # the rotary table's length: a longer one holds the same angles
    a.model.head_chunk_tokens = b.model.head_chunk_tokens  # rows of logits at a time: memory, the same sums
    assert a == b


@pytest.mark.parametrize("name", ["4090", "3090", "16gb", "12gb", "record-24gb", "record-16gb"])
def test_memory_capped_presets_keep_the_head_in_chunks_of_8192(name: str) -> None:
    """Their peaks were measured with the head's logits in chunks of 8,192 rows; the uncapped presets take a whole
    `seed` micro-batch (1.7 GiB more at the peak, docs/BENCHMARKS.md session 22)."""
    assert build_config(name, []).model.head_chunk_tokens == 8192
    assert build_config("seed", []).model.head_chunk_tokens == build_config("h100", []).model.head_chunk_tokens == 32768
