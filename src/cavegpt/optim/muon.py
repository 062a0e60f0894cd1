"""Muon: SGD-momentum whose update is orthogonalized by a Newton–Schulz iteration.

For each 2-D weight, the Nesterov momentum update ``U`` is replaced by (approximately) the
orthogonal factor of its polar decomposition, so every direction of the update moves at the same
rate. The iteration runs in bfloat16 and stops early on purpose: its coefficients maximise the
slope at zero, which leaves singular values spread around 1 (roughly 0.7–1.2) rather than exactly 1,
and that costs nothing in training (Keller Jordan, modded-nanogpt record 2024-10-10).

Options the ``record`` preset turns on (all off in ``seed``):

* Polar Express coefficients: a different (a, b, c) at each of the five iterations, which brings
  the singular values closer to 1 in as many steps (Amsel, Persson, Musco & Gower 2025,
  arXiv 2505.16932; record 2025-09-29 "PolarExpress").
* NorMuon: after orthogonalization, each neuron's update is divided by the square root of a
  running mean of its own squared size, then the whole update is scaled back to its norm, so no
  neuron moves much further than the others (Li et al. 2025, arXiv 2510.05491; record 2025-10-24).
* Cautious weight decay: decay only the entries whose update already pulls them towards zero,
  at a rate tied to the learning rate's schedule (Chen et al. 2025, arXiv 2510.12402; record
  2025-11-10 "CautiousWD").
"""

from __future__ import annotations

import torch
from torch import Tensor

QUINTIC_COEFFICIENTS = ((3.4445, -4.7750, 2.0315),)  # the same at every iteration
# computed by the Polar Express paper's method for 5 iterations, safety factor 2e-2, cushion 2
POLAR_EXPRESS_COEFFICIENTS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
COEFFICIENTS = {"quintic": QUINTIC_COEFFICIENTS, "polar_express": POLAR_EXPRESS_COEFFICIENTS}
POLAR_EXPRESS_SAFETY = 1.02  # the input's norm is inflated by this so its top singular value stays below 1


def newton_schulz(update: Tensor, steps: int = 5, coefficients: str = "quintic", eps: float = 1e-7) -> Tensor:
    """Approximate ``U V^T`` of ``update = U S V^T`` (works on a stack of matrices too).

    Iteration i uses ``coefficients``' i-th (a, b, c), the last one once they run out.
    """
    table = COEFFICIENTS[coefficients]
    x = update.bfloat16()
    wide = x.size(-2) > x.size(-1)
    if wide:  # iterate on the short side: X X^T is then the small Gram matrix
        x = x.mT
    norm = x.norm(dim=(-2, -1), keepdim=True)  # spectral norm <= Frobenius norm
    x = x / (norm + eps) if coefficients == "quintic" else x / (norm * POLAR_EXPRESS_SAFETY + eps)
    for i in range(steps):
        a, b, c = table[min(i, len(table) - 1)]
        gram = _bf16_product(x, x.mT)
        x = a * x + _bf16_product(b * gram + c * _bf16_product(gram, gram), x)
    return x.mT if wide else x


def _bf16_product(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of bf16 stacks, summed in float32 and rounded to bf16 as a bf16 matmul does. On the CPU through a
    float32 matmul: CPUs without bf16 matrix units ran the bf16 one 25-30× slower (docs/BENCHMARKS.md, session 21)."""
    if a.device.type == "cpu":
        return (a.float() @ b.float()).bfloat16()
    return a @ b


def neuron_axis(shape: torch.Size) -> int:
    """The axis NorMuon averages over: statistics are kept per entry of the longer side."""
    return -1 if shape[-2] >= shape[-1] else -2


def normalize_neurons(update: Tensor, second_moment: Tensor, beta2: float) -> Tensor:
    """NorMuon's step: ``update`` divided per neuron by ``sqrt(second_moment)``, rescaled to its own norm.

    ``second_moment`` (the update's shape with the averaged axis kept as 1) is updated in place as an
    exponential mean, factor ``beta2``, of each neuron's mean squared update.
    """
    update = update.float()
    second_moment.lerp_(update.square().mean(dim=neuron_axis(update.shape), keepdim=True), 1 - beta2)
    scaled = update * second_moment.clamp_min(1e-10).rsqrt()
    ratio = update.norm(dim=(-2, -1), keepdim=True) / scaled.norm(dim=(-2, -1), keepdim=True).clamp_min(1e-10)
    return scaled * ratio


class Muon(torch.optim.Optimizer):
    """Muon for 2-D hidden weights of shape [out, in].

    ``momentum`` and ``lr`` are read from the group each step, so a schedule may change them. The
    step is scaled by ``sqrt(max(1, out / in))`` so tall matrices (the MLP's input layer) move as far
    per element as square ones (modded-nanogpt, Nov 2024). With ``batched``, matrices of one shape go
    through Newton–Schulz together as one stack (a few batched matmuls instead of dozens of small
    ones; each matrix's result is the same as alone).

    ``normuon_beta2`` > 0 turns on NorMuon; ``weight_decay`` > 0 turns on cautious weight decay,
    which shrinks an entry by ``lr * weight_decay * lr`` per step when its update has its sign, so
    the decay follows the learning-rate schedule as in record 2025-11-10.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 batched: bool = True, coefficients: str = "quintic", normuon_beta2: float = 0.0,
                 weight_decay: float = 0.0):
        if coefficients not in COEFFICIENTS:
            raise ValueError(f"coefficients={coefficients!r}: choose one of {', '.join(COEFFICIENTS)}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.batched, self.coefficients = batched, coefficients
        self.normuon_beta2, self.weight_decay = normuon_beta2, weight_decay

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
                params = [param for param, _ in pairs]
                stacked = torch.stack([update for _, update in pairs])
                updates = newton_schulz(stacked, group["ns_steps"], self.coefficients)
                if self.normuon_beta2:
                    updates = self._normalize(params, updates)
                for param, update in zip(params, updates):
                    scale = max(1.0, param.size(-2) / param.size(-1)) ** 0.5
                    if self.weight_decay:
                        shrinking = (update * param) >= 0  # the update already points this entry to zero
                        param.sub_(param * shrinking, alpha=lr * self.weight_decay * lr)
                    param.add_(update.to(param.dtype), alpha=-lr * scale)

    def _normalize(self, params: list[Tensor], updates: Tensor) -> Tensor:
        """NorMuon over a stack of same-shape updates; each parameter keeps its own second moment."""
        moments = []
        for param in params:
            state = self.state[param]
            if "second_moment" not in state:
                shape = list(param.shape)
                shape[neuron_axis(param.shape)] = 1
                state["second_moment"] = torch.zeros(shape, dtype=torch.float32, device=param.device)
            moments.append(state["second_moment"])
        stacked = torch.stack(moments)
        normalized = normalize_neurons(updates, stacked, self.normuon_beta2)
        for moment, new in zip(moments, stacked):
            moment.copy_(new)
        return normalized
