"""The seed's four optimizers over the model's parameter groups, stepped together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cavegpt.optim.muon import COEFFICIENTS, Muon
from cavegpt.optim.schedules import lr_multiplier, muon_momentum


@dataclass
class OptimConfig:
    """Learning rates and schedules. Defaults are the seed's."""

    embed_lr: float = 0.6  # Adam: token + value embeddings
    head_lr: float = 0.008  # Adam: LM head
    matrix_lr: float = 0.05  # Muon: 2-D hidden weights
    scalar_lr: float = 0.04  # Adam: lambdas, skip weights, gates, smear/backout
    adam_beta1: float = 0.8
    adam_beta2: float = 0.95
    adam_eps: float = 1e-10
    muon_momentum_start: float = 0.85
    muon_momentum: float = 0.95
    muon_momentum_warmup: int = 300
    ns_steps: int = 5
    warmup_iters: int = 0
    cooldown_iters: int = 640
    # the record preset's options (cavegpt.optim.muon, cavegpt.optim.schedules); off reproduces the seed
    ns_coefficients: str = "quintic"  # or "polar_express"
    normuon_beta2: float = 0.0  # > 0: NorMuon with this second-moment decay
    muon_weight_decay: float = 0.0  # > 0: cautious weight decay on the Muon matrices
    lr_floor: float = 0.0  # the learning-rate multiplier at the end of the cooldown
    stage_lr_multipliers: tuple[float, ...] = ()  # one per equal stage of training (with the batch ramp)

    def validate(self) -> None:
        for name in ("embed_lr", "head_lr", "matrix_lr", "scalar_lr", "adam_eps", "muon_weight_decay", "lr_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must not be negative")
        for name in ("adam_beta1", "adam_beta2", "muon_momentum_start", "muon_momentum", "normuon_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1)")
        if min(self.warmup_iters, self.cooldown_iters, self.muon_momentum_warmup) < 0 or self.ns_steps < 1:
            raise ValueError("warmup_iters, cooldown_iters, muon_momentum_warmup must be >= 0 and ns_steps >= 1")
        if self.ns_coefficients not in COEFFICIENTS:
            raise ValueError(f"ns_coefficients={self.ns_coefficients!r}: choose one of {', '.join(COEFFICIENTS)}")
        if any(m <= 0 for m in self.stage_lr_multipliers):
            raise ValueError(f"stage_lr_multipliers={self.stage_lr_multipliers} must all be > 0")


class Optimizers:
    """Adam (embeddings), Adam (LM head), Muon (matrices), Adam (scalars); one schedule for all."""

    NAMES = ("embeddings", "lm_head", "matrices", "scalars")
    MATRIX_GROUPS = ("matrices",)  # Muon's: each tensor is stepped whole (Newton–Schulz needs all of it)

    def __init__(self, groups: dict[str, list[nn.Parameter]], config: OptimConfig, num_iterations: int):
        self.config = config
        self.num_iterations = num_iterations
        self.multiplier = 1.0  # the learning-rate multiplier last applied
        # one kernel per step for all of a group's tensors; on the CPU too: 16 ms against 60 for the tiny preset's
        # 16M embedding parameters with the multi-tensor default (2 cores, docs/BENCHMARKS.md, session 21)
        fused = all(p.device.type in ("cuda", "cpu") for ps in groups.values() for p in ps)

        def adam(params: list[nn.Parameter], lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(params, lr=lr, betas=(config.adam_beta1, config.adam_beta2),
                                    eps=config.adam_eps, fused=fused or None)

        self.by_name: dict[str, torch.optim.Optimizer] = {
            "embeddings": adam(groups["embeddings"], config.embed_lr),
            "lm_head": adam(groups["lm_head"], config.head_lr),
            "matrices": Muon(groups["matrices"], lr=config.matrix_lr, momentum=config.muon_momentum,
                             ns_steps=config.ns_steps, coefficients=config.ns_coefficients,
                             normuon_beta2=config.normuon_beta2, weight_decay=config.muon_weight_decay),
            "scalars": adam(groups["scalars"], config.scalar_lr),
        }
        for optimizer in self.by_name.values():
            for group in optimizer.param_groups:
                group["base_lr"] = group["lr"]

    def set_schedule(self, step: int) -> None:
        """Learning rates and Muon momentum for optimizer step ``step`` (0-based)."""
        c = self.config
        self.multiplier = lr_multiplier(step, self.num_iterations, c.cooldown_iters, c.warmup_iters, c.lr_floor,
                                        c.stage_lr_multipliers)
        for optimizer in self.by_name.values():
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * self.multiplier
        for group in self.by_name["matrices"].param_groups:
            group["momentum"] = muon_momentum(step, c.muon_momentum_start, c.muon_momentum, c.muon_momentum_warmup)

    def step(self, step: int, order: Sequence[str] = NAMES, ready: Callable[[str], None] | None = None,
             done: Callable[[str], None] | None = None) -> None:
        """Optimizer step ``step`` of every group, in ``order``; ``ready(name)`` runs just before group
        ``name`` steps and ``done(name)`` right after (under torchrun: its gradients' means arriving, its
        updated share leaving). The groups are independent, so the order changes no number."""
        self.set_schedule(step)
        for name in order:
            if ready is not None:
                ready(name)
            self.by_name[name].step()
            if done is not None:
                done(name)
        self.zero_grad()

    def zero_grad(self) -> None:
        for optimizer in self.by_name.values():
            optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.by_name.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.by_name.items():
            opt.load_state_dict(state[name])
