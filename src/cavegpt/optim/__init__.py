"""Optimizers (Muon + Adam groups) and the step schedules."""

from cavegpt.optim.muon import Muon, newton_schulz, normalize_neurons
from cavegpt.optim.optimizers import OptimConfig, Optimizers
from cavegpt.optim.schedules import (
    attention_window, lr_multiplier, micro_batches, mtp_weights, muon_momentum, stage_of, tokens_before)

__all__ = ["Muon", "newton_schulz", "normalize_neurons", "OptimConfig", "Optimizers", "attention_window",
           "lr_multiplier", "micro_batches", "mtp_weights", "muon_momentum", "stage_of", "tokens_before"]
