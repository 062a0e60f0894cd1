"""One run's configuration: the components' dataclasses, named presets and ``key=value`` overrides.

Each component owns its settings (``ModelConfig`` in :mod:`cavegpt.model.gpt`, ``DataConfig`` in
:mod:`cavegpt.data.loader`, ``OptimConfig`` in :mod:`cavegpt.optim.optimizers`, ``TrainConfig``
in :mod:`cavegpt.train.trainer`); this module only puts them together.

Overrides name a field as ``section.field=value`` or, when the field name is unique across
sections (all of them are today), as ``field=value``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cavegpt.data.loader import DataConfig
from cavegpt.model.gpt import ModelConfig
from cavegpt.optim.optimizers import OptimConfig
from cavegpt.optim.schedules import tokens_before
from cavegpt.train.trainer import TrainConfig


class ConfigError(ValueError):
    """A preset, key or value the user gave that cannot be used; the message lists what can."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    SECTIONS: typing.ClassVar[tuple[str, ...]] = ("model", "data", "optim", "train")

    def validate(self) -> None:
        for section in self.SECTIONS:
            try:
                getattr(self, section).validate()
            except ValueError as e:
                raise ConfigError(f"{section}: {e}") from None
        if self.optim.cooldown_iters + self.optim.warmup_iters > self.train.num_iterations:
            raise ConfigError(f"warmup_iters + cooldown_iters ({self.optim.warmup_iters} + "
                              f"{self.optim.cooldown_iters}) exceed num_iterations={self.train.num_iterations}")
        if self.data.seq_len > self.model.max_seq_len:
            raise ConfigError(f"data.seq_len={self.data.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}, "
                              "the rotary table's length: raise max_seq_len to at least seq_len")
        ramp, multipliers = self.train.batch_ramp, self.optim.stage_lr_multipliers
        if ramp and multipliers and len(ramp) != len(multipliers):
            raise ConfigError(f"train.batch_ramp {ramp} and optim.stage_lr_multipliers {multipliers} must name "
                              "the same number of stages")

    def planned_tokens(self) -> int:
        """Training tokens of the whole run (every step's micro-batches)."""
        train = self.train
        return tokens_before(train.num_iterations, train.grad_accum, train.batch_ramp, self.data.micro_batch_tokens)[-1]

    def to_dict(self) -> dict[str, dict[str, typing.Any]]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def seed_preset() -> Config:
    """The seed's recipe exactly: 16 × 32,768 tokens per step, 1750 steps, four optimizer groups."""
    config = Config()
    config.train.device = "cuda"
    return config


def in_micro_batches(config: Config, seq_len: int) -> Config:
    """``config`` in micro-batches of ``seq_len`` tokens: as many as keep every step's (and stage's) tokens.

    The rotary table grows with ``seq_len`` where it must. A count that would not come out whole is refused.
    """
    def rescaled(count: int) -> int:
        tokens = count * config.data.seq_len
        if tokens % seq_len:
            raise ConfigError(f"{count} micro-batches of {config.data.seq_len} tokens do not split into "
                              f"micro-batches of {seq_len}")
        return tokens // seq_len

    config.train.grad_accum = rescaled(config.train.grad_accum)
    config.train.batch_ramp = tuple(rescaled(n) for n in config.train.batch_ramp)
    config.data.seq_len = seq_len
    config.model.max_seq_len = max(config.model.max_seq_len, seq_len)
    return config


def seed_layout(seq_len: int) -> Config:
    """The seed's recipe in micro-batches of ``seq_len`` tokens: as many as make its 524,288 tokens per step."""
    return in_micro_batches(seed_preset(), seq_len)


def capped_head(config: Config) -> Config:
    """``config`` with the fused head's logits in chunks of 8,192 rows (0.8 GB in bf16), for the memory-capped
    presets, whose peaks were measured so."""
    config.model.head_chunk_tokens = 8192
    return config


def h100_preset() -> Config:
    """The seed's recipe in 4 × 131,072-token micro-batches for 80 GB cards: peak 52.2 GiB with the fused MLP.

    On one H100 with Flex, 2.0 % more tokens/s than 8 × 65,536 (itself 2.6–2.9 % over the seed's 16 × 32,768
    with FA4); the same val loss after 150 steps on textmix at 131,072 tokens per step as 1 × 131,072 and as
    4 × 32,768 (2.2330 vs 2.2360). Each comparison on one machine (docs/BENCHMARKS.md, 2026-11-26, sessions 9, 11).
    """
    return seed_layout(131072)


def consumer_24gb_preset() -> Config:
    """The fastest layout measured under a 22 GiB cap: the seed's 16 × 32,768 (peak 19.7 GiB), its head in chunks of
    8,192 rows (1.7 GiB less than the whole micro-batch's on an H100, docs/BENCHMARKS.md session 22).

    Measured on an H100 capped with ``set_per_process_memory_fraction`` (docs/BENCHMARKS.md). A card
    that also drives a display may lack those 20 GiB; then ``--preset 16gb`` keeps the recipe in less.
    """
    return capped_head(seed_preset())


def sixteen_gb_preset() -> Config:
    """The seed's recipe for 16 GB cards (RTX 4080, 4060 Ti 16 GB, 5070 Ti): 32 × 16,384 tokens, peak 12.8 GiB."""
    return capped_head(seed_layout(16384))


def twelve_gb_preset() -> Config:
    """The seed's recipe for 12 GB cards (RTX 3060 12 GB, 4070): 64 × 8,192 tokens, peak 8.7 GiB."""
    return capped_head(seed_layout(8192))


def eight_gpu_preset() -> Config:
    """The speedrun's 8×H100 layout: one 65,536-token sequence per GPU per step (launch with torchrun, 8 processes).

    Same 524,288 tokens per step as the seed, so the learning recipe is unchanged.
    """
    return seed_layout(65536)


def record_recipe() -> Config:
    """The seed plus the later speedrun records' ideas that lower the tokens needed for 3.28 (issue #11).

    Each option is a field of a component's config and cites its record where it is implemented:
    batch ramp 4 → 8 → 12 micro-batches (131k → 393k tokens per step) with learning rates × 1, 1.52,
    1.73 and a floor of 0.1 after a cooldown over the last 55 % (records 2025-11-29, 2026-01-19);
    Polar Express coefficients (2025-09-29); NorMuon (2025-10-24); cautious weight decay on the Muon
    matrices (2025-11-10); multi-token prediction [1, 0.5, 0.25] fading to [1] (2025-12-22); a
    bigram hash embedding of 5 × 50,304 rows (2026-01-19); logits soft-capped at 15 instead of 30
    (2025-01-04; the records' later ``30·σ(z/7.5)`` is this plus a constant, so the same softmax); the
    12-layer records' attention layout from 2025-01-16 on: no attention in block 7, half the window in
    every layer but 0, 4 and 11 (measured on one H100: +6.8 % tokens/s at the last stage, and a lower
    loss after 200 steps on textmix; docs/BENCHMARKS.md, 2026-11-26, session 12); an empty layer 0, no
    MLP (2025-09-05) and no attention (2025-09-21): +7.1 % tokens/s, and 0.004 above the layout alone
    after 600 steps on textmix, down from 0.09 after 200 (docs/BENCHMARKS.md, session 13).

    Expectation on FineWeb (published, 8×H100, with more changes than these): 2026-01-19 reached
    3.277 after 1600 steps ≈ 0.42B tokens; 2025-11-29, with the same batch ramp, 3.278 after 2160
    steps ≈ 0.57B tokens. This preset's 1920 steps train 0.50B tokens (the seed: 0.92B). Learning
    rates: the records' Adam rates are the seed's; Muon's is the NorMuon records' 0.023, rounded up.
    """
    config = seed_preset()
    config.model.bigram_vocab = 5 * 50304
    config.model.logit_softcap = 15.0
    config.model.no_attention_layers = (0, 7)
    config.model.no_mlp_layers = (0,)
    config.model.short_window_layers = (1, 2, 3, 5, 6, 8, 9, 10)
    config.train.num_iterations = 1920
    config.train.batch_ramp = (4, 8, 12)
    config.train.mtp_weights = (0.5, 0.25)
    config.optim.stage_lr_multipliers = (1.0, 1.52, 1.73)
    config.optim.cooldown_iters = round(0.55 * 1920)
    config.optim.lr_floor = 0.1
    config.optim.matrix_lr = 0.025
    config.optim.ns_coefficients = "polar_express"
    config.optim.normuon_beta2 = 0.95
    config.optim.muon_weight_decay = 1.2
    return config


def record_preset() -> Config:
    """The record recipe for 80 GB cards, in micro-batches of 131,072 tokens (1 → 2 → 3): peak 49.7 GiB (Flex).

    At its last stage on one H100 with Flex, 5.1 % more tokens/s than in the recipe's 12 × 32,768 (434,007 vs
    412,923, one machine, before the attention layout; docs/BENCHMARKS.md, 2026-11-26, session 11). The peak is
    session 13's, with layer 0 empty; the 24 and 16 GB presets' are session 12's, with layer 0 whole.
    """
    return in_micro_batches(record_recipe(), 131072)


def record_24gb_preset() -> Config:
    """The record recipe in micro-batches of 16,384 tokens (twice its 32,768's) for 24 GB cards: peak 15.4 GiB."""
    return capped_head(in_micro_batches(record_recipe(), 16384))


def record_16gb_preset() -> Config:
    """The record recipe in micro-batches of 8,192 tokens (four times its 32,768's) for 16 GB cards: peak 11.4 GiB."""
    return capped_head(in_micro_batches(record_recipe(), 8192))


SAMPLE_CORPUS = Path(__file__).parent / "data" / "sample"


def tiny_preset() -> Config:
    """A small model of the same architecture that trains on a CPU in minutes, on the shipped sample corpus."""
    config = Config()
    config.data.train_glob = str(SAMPLE_CORPUS / "sample_train_*.bin")
    config.data.val_glob = str(SAMPLE_CORPUS / "sample_val_*.bin")
    config.model = ModelConfig(n_layer=6, n_head=2, d_model=64, backout_layer=4, window=512, max_seq_len=4096)
    config.data.seq_len = 512
    config.data.val_tokens = 16 * 512
    config.train.grad_accum = 1
    config.train.num_iterations = 200
    config.train.val_every = 50
    config.train.window_start = 64
    config.optim.cooldown_iters = 73  # the seed's cooldown fraction, 640/1750
    config.optim.muon_momentum_warmup = 34  # and its momentum warm-up fraction, 300/1750
    return config


PRESETS: dict[str, Callable[[], Config]] = {
    "seed": seed_preset,
    "h100": h100_preset,
    "4090": consumer_24gb_preset,
    "3090": consumer_24gb_preset,
    "8xh100": eight_gpu_preset,
    "record": record_preset,
    "record-24gb": record_24gb_preset,
    "16gb": sixteen_gb_preset,
    "record-16gb": record_16gb_preset,
    "12gb": twelve_gb_preset,
    "tiny": tiny_preset,
}
PRESET_NAMES = (*PRESETS, "auto")


class CardProperties(typing.Protocol):
    """What ``auto`` reads of a GPU (``torch.cuda.get_device_properties`` returns one)."""

    name: str
    total_memory: int
    major: int
    minor: int


# (smallest total memory in GiB, preset, its measured peak under a cap): largest first. Cards report a little
# less than their label (a 16 GB card: ≈ 15.6 GiB), and a display or the CUDA context takes some more.
CARD_CLASSES = (
    (70.0, "h100", "4 × 131,072-token micro-batches, measured peak 52.2 GiB"),
    (22.0, "4090", "16 × 32,768-token micro-batches, measured peak 19.7 GiB under a 22 GiB cap"),
    (15.0, "16gb", "32 × 16,384-token micro-batches, measured peak 12.8 GiB under a 14.5 GiB cap"),
    (11.0, "12gb", "64 × 8,192-token micro-batches, measured peak 8.7 GiB under a 10.5 GiB cap"),
)


def auto_preset_name(card: CardProperties | None = None) -> tuple[str, str]:
    """The preset for ``card`` (default: the GPU PyTorch sees), and a sentence saying why.

    Every choice is the seed's recipe (524,288 tokens per step) in the largest micro-batches that fit;
    ``record`` and its memory variants are picked by hand until ``record`` is proven on FineWeb.
    """
    if card is None:
        if not torch.cuda.is_available():
            return "tiny", "no CUDA GPU found: using the CPU preset 'tiny' (a demo, not the speedrun)"
        card = torch.cuda.get_device_properties(0)
    gib = card.total_memory / 2**30
    for need, name, why in CARD_CLASSES:
        if gib >= need:
            if name == "4090" and (card.major, card.minor) < (8, 9):
                name = "3090"  # the same layout; named for the card class (Ampere and older)
            return name, f"{card.name} with {gib:.0f} GiB (sm_{card.major}{card.minor}): using preset '{name}': {why}"
    raise ConfigError(f"{card.name} has {gib:.1f} GiB; the smallest speedrun preset ('12gb') peaks at 8.7 GiB and "
                      f"needs a card with at least {CARD_CLASSES[-1][0]:.0f} GiB (the weights, gradients and optimizer "
                      "state alone take 3.8 GiB). Smaller micro-batches (--preset 12gb seq_len=4096 grad_accum=128) "
                      "are untested.")


def load_preset(name: str) -> Config:
    if name == "auto":
        name, _ = auto_preset_name()
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESET_NAMES)}")
    return PRESETS[name]()


def _field_types(section: object) -> dict[str, typing.Any]:
    return typing.get_type_hints(type(section))


def _parse(raw: str, kind: typing.Any) -> typing.Any:
    """``raw`` as a value of type ``kind`` (int, float, bool, str, ``X | None``, or ``tuple[X, ...]`` as ``a,b,c``)."""
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        parts = raw.strip("()[] ").split(",")
        return tuple(_parse(part.strip(), item) for part in parts if part.strip())
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if raw.lower() in ("none", "null", ""):
            return None
        (kind,) = [k for k in typing.get_args(kind) if k is not type(None)]
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if kind is int:
        return int(raw.replace("_", ""))
    if kind is float:
        return float(raw.replace("_", ""))
    return raw


def _locate(config: Config, key: str) -> tuple[str, str]:
    """``key`` → (section, field), accepting ``section.field`` or a field name unique across sections."""
    if "." in key:
        section, name = key.split(".", 1)
        if section in Config.SECTIONS and name in _field_types(getattr(config, section)):
            return section, name
    else:
        owners = [s for s in Config.SECTIONS if key in _field_types(getattr(config, s))]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ConfigError(f"{key!r} is ambiguous; write one of: {', '.join(f'{s}.{key}' for s in owners)}")
    valid = "\n".join(f"  {s}: {', '.join(_field_types(getattr(config, s)))}" for s in Config.SECTIONS)
    raise ConfigError(f"unknown config key {key!r}. Valid keys (section.field or field):\n{valid}")


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """Apply ``key=value`` strings in order, then validate the whole config."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item!r} is not key=value (for example num_iterations=100)")
        key, raw = item.split("=", 1)
        section, name = _locate(config, key.strip())
        kind = _field_types(getattr(config, section))[name]
        try:
            value = _parse(raw.strip(), kind)
        except ValueError as e:
            type_name = getattr(kind, "__name__", str(kind))
            raise ConfigError(f"bad value {raw!r} for {section}.{name} ({type_name}): {e}") from None
        setattr(getattr(config, section), name, value)
    config.validate()
    return config


def config_from_dict(data: dict[str, dict[str, typing.Any]], origin: str) -> Config:
    """Rebuild a Config saved by ``Config.to_dict`` (config.json, checkpoints)."""
    sections = {}
    for section in Config.SECTIONS:
        kind = typing.get_type_hints(Config)[section]
        known = {f.name for f in dataclasses.fields(kind)}
        given = data.get(section, {})
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown {section} settings {', '.join(unknown)} "
                              "(written by another version of cavegpt?)")
        hints = typing.get_type_hints(kind)  # JSON has lists where the dataclass has tuples
        sections[section] = kind(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in given.items()})
    config = Config(**sections)
    config.validate()
    return config


# settings a resumed run may change without changing what is learned
RESUME_MAY_CHANGE = {"data.train_glob", "data.val_glob", "train.log_dir", "train.run_id", "train.device",
                     "train.compile", "train.autotune_elementwise", "train.log_every", "train.save_checkpoint",
                     "train.checkpoint_every", "train.checkpoint_minutes", "train.keep_checkpoints", "train.resume",
                     "train.target_val_loss", "train.check_finite", "train.logger", "train.collective_timeout_minutes"}


def differences(saved: Config, current: Config) -> list[str]:
    """``section.key: saved → current`` for every setting that differs and must not."""
    out = []
    for section in Config.SECTIONS:
        a, b = dataclasses.asdict(getattr(saved, section)), dataclasses.asdict(getattr(current, section))
        out += [f"{section}.{k}: {a[k]!r} → {b[k]!r}" for k in a if a[k] != b[k] and f"{section}.{k}" not in RESUME_MAY_CHANGE]
    return out


def build_config(preset: str, overrides: list[str]) -> Config:
    return apply_overrides(load_preset(preset), overrides)
