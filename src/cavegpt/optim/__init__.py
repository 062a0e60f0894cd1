"""Optimizers (Muon + Adam groups) and the step schedules."""

from cavegpt.optim.muon import Muon, newton_schulz
from cavegpt.optim.optimizers import OptimConfig, Optimizers
from cavegpt.optim.schedules import attention_window, lr_multiplier, muon_momentum

__all__ = ["Muon", "newton_schulz", "OptimConfig", "Optimizers", "attention_window", "lr_multiplier", "muon_momentum"]
