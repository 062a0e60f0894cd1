"""Everything that changes with the step: learning rate, Muon momentum, attention window, and the
``record`` preset's staged batch size and multi-token loss weights.

Stages: a schedule given as a tuple of n values splits training into n equal stages, value i
applying to stage i (``stage_of``). The batch ramp and the stage learning-rate multipliers use it.
"""

from __future__ import annotations

from itertools import accumulate

from cavegpt.model.masks import BLOCK_SIZE


def stage_of(step: int, num_iterations: int, n_stages: int) -> int:
    """Which of ``n_stages`` equal stages ``step`` falls in (steps past the end stay in the last)."""
    return min(step * n_stages // num_iterations, n_stages - 1)


def lr_multiplier(step: int, num_iterations: int, cooldown_iters: int, warmup_iters: int = 0,
                  floor: float = 0.0, stage_multipliers: tuple[float, ...] = ()) -> float:
    """Trapezoid: linear warm-up, flat, then a linear cooldown that ends at ``floor``.

    The seed: no warm-up, flat until step 1110, then ``(1750 - step) / 640`` down to 0. The flat
    part is multiplied by the current stage's entry of ``stage_multipliers`` (the learning rate
    grows with the batch, record 2025-11-29 "BatchSizeSchedule"); the cooldown goes from there to
    ``floor`` (a floor of 0.1–0.15 instead of 0: records 2025-01-13 and 2025-11-29).
    """
    stage = stage_multipliers[stage_of(step, num_iterations, len(stage_multipliers))] if stage_multipliers else 1.0
    if step < warmup_iters:
        return stage * (step + 1) / warmup_iters
    if step < num_iterations - cooldown_iters:
        return stage
    remaining = (num_iterations - step) / cooldown_iters  # 1 → 0 over the cooldown
    return stage * remaining + floor * (1 - remaining)


def muon_momentum(step: int, start: float, end: float, warmup_steps: int) -> float:
    """Linear warm-up of Muon's momentum from ``start`` to ``end`` over ``warmup_steps``."""
    if warmup_steps <= 0:
        return end
    frac = min(step / warmup_steps, 1.0)
    return (1 - frac) * start + frac * end


def attention_window(step: int, num_iterations: int, start: int, end: int) -> int:
    """Sliding-window size in tokens: the ramp ``start → end`` rounded to whole 128-token blocks.

    Rounding to blocks (as the Dec 2024 records do) keeps the mask aligned with FlexAttention's
    tiles; the seed's 64 → 1792 thus runs 128, 256, …, 1792 tokens.
    """
    frac = step / num_iterations
    ramp = (1 - frac) * start + frac * end
    return max(1, int((ramp + BLOCK_SIZE / 2) // BLOCK_SIZE)) * BLOCK_SIZE


def micro_batches(step: int, num_iterations: int, grad_accum: int, ramp: tuple[int, ...] = ()) -> int:
    """Micro-batches in optimizer step ``step``: ``grad_accum``, or the stage's entry of ``ramp``.

    A growing batch (record 2025-11-29 "BatchSizeSchedule": 8 → 16 → 24 sequences of 2048 per GPU):
    small batches are worth more per token early on, large ones run faster per token later.
    """
    return ramp[stage_of(step, num_iterations, len(ramp))] if ramp else grad_accum


def tokens_before(num_iterations: int, grad_accum: int, ramp: tuple[int, ...], micro_batch_tokens: int) -> list[int]:
    """``out[s]`` = training tokens in steps ``0 … s-1``, for s = 0 … num_iterations."""
    per_step = (micro_batches(s, num_iterations, grad_accum, ramp) * micro_batch_tokens for s in range(num_iterations))
    return list(accumulate(per_step, initial=0))


def mtp_weights(step: int, num_iterations: int, extra: tuple[float, ...]) -> list[float]:
    """Loss weights for predicting tokens t+1, t+2, … at ``step``: ``[1, *extra]`` fading out.

    Multi-token prediction (record 2025-12-22): with ``extra = (0.5, 0.25)`` the weights go
    ``[1, 0.5, 0.25 → 0]`` over the first third of training, ``[1, 0.5 → 0, 0]`` over the second and
    ``[1, 0, 0]`` after. In general, with m extra weights, weight j (1-based) holds until
    ``(m - j) / (m + 1)`` of training and falls linearly to 0 at ``(m + 1 - j) / (m + 1)``.
    """
    m = len(extra)
    progress = (m + 1) * step / num_iterations  # in stages of 1/(m+1) of training
    return [1.0, *(w * min(1.0, max(0.0, m + 1 - j - progress)) for j, w in enumerate(extra, start=1))]
