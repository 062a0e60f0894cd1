"""Everything that changes with the step: learning rate, Muon momentum, attention window."""

from __future__ import annotations

from cavegpt.model.masks import BLOCK_SIZE


def lr_multiplier(step: int, num_iterations: int, cooldown_iters: int, warmup_iters: int = 0) -> float:
    """Trapezoid: linear warm-up, flat, then linear cooldown to 0 at ``num_iterations``.

    The seed: no warm-up, flat until step 1110, then ``(1750 - step) / 640``.
    """
    if step < warmup_iters:
        return (step + 1) / warmup_iters
    if step < num_iterations - cooldown_iters:
        return 1.0
    return (num_iterations - step) / cooldown_iters


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
