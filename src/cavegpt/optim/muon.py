"""Muon: SGD-momentum whose update is orthogonalized by a Newton–Schulz iteration.

For each 2-D weight, the Nesterov momentum update ``U`` is replaced by (approximately) the
orthogonal factor of its polar decomposition, so every direction of the update moves at the same
rate. The iteration runs in bfloat16 and stops early on purpose: its coefficients maximise the
slope at zero, which leaves singular values spread around 1 (roughly 0.7–1.2) rather than exactly 1,
and that costs nothing in training (Keller Jordan, modded-nanogpt record 2024-10-10).
"""

from __future__ import annotations

import torch
from torch import Tensor

QUINTIC_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(update: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate ``U V^T`` of ``update = U S V^T`` (works on a stack of matrices too)."""
    a, b, c = QUINTIC_COEFFICIENTS
    x = update.bfloat16()
    wide = x.size(-2) > x.size(-1)
    if wide:  # iterate on the short side: X X^T is then the small Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if wide else x


class Muon(torch.optim.Optimizer):
    """Muon for 2-D hidden weights of shape [out, in].

    ``momentum`` is read from the group each step, so a schedule may change it. The step is
    scaled by ``sqrt(max(1, out / in))`` so tall matrices (the MLP's input layer) move as far per
    element as square ones (modded-nanogpt, Nov 2024). With ``batched``, matrices of one shape go
    through Newton–Schulz together as one stack (a few batched matmuls instead of dozens of small
    ones; each matrix's result is the same as alone).
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 batched: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.batched = batched

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            same_shape: dict[object, list[tuple[Tensor, Tensor]]] = {}
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad)
                buffer = state["momentum_buffer"]
                buffer.lerp_(param.grad, 1 - momentum)
                update = param.grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                same_shape.setdefault(param.shape if self.batched else id(param), []).append((param, update))
            for pairs in same_shape.values():
                orthogonal = newton_schulz(torch.stack([update for _, update in pairs]), group["ns_steps"])
                for (param, _), update in zip(pairs, orthogonal):
                    scale = max(1.0, param.size(-2) / param.size(-1)) ** 0.5
                    param.add_(update.to(param.dtype), alpha=-lr * scale)
