"""bf16 copies of the matmul weights, made once per optimizer step instead of once per micro-batch.

Under bf16 autocast each ``nn.Linear`` casts its float32 weight to bf16 on every micro-batch, and its
backward pass casts the bf16 weight gradient back to float32 before it is summed into ``.grad``: two
passes over every block weight per micro-batch, 16 of them per `seed` step (≈ 8.8 ms of kernels in
session 14's profile, docs/BENCHMARKS.md). Here those weights are cast once per step into bf16 buffers
that stand in for the parameters while the step's micro-batches run; the buffers' bf16 gradients are
summed into the float32 parameters' ``.grad``. The arithmetic is autocast's own: its matmuls read these
same bf16 values and produce these same bf16 gradients, so losses and ``.grad`` stay bit for bit alike on the
CPU. On a GPU the two compiled graphs may order a reduction differently: in session 16's H100 check every matrix
and table gradient matched bit for bit, scalars whose gradient nearly cancels by up to 1.8 % (docs/BENCHMARKS.md).

The LM head is left out: its fused loss (:mod:`cavegpt.model.head_loss`) sums its gradient in float32,
which a bf16 stand-in would round. Embedding tables are looked up in float32 and are left out too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class Bf16Weights:
    """Stand-ins for the ``nn.Linear`` weights of ``model`` but ``skip`` (the LM head), for training steps."""

    def __init__(self, model: nn.Module, skip: tuple[nn.Module, ...] = ()):
        self.linears = [m for m in model.modules() if isinstance(m, nn.Linear) and all(m is not s for s in skip)]
        self.owners = [m.weight for m in self.linears]
        self.copies = [w.detach().to(torch.bfloat16).requires_grad_() for w in self.owners]
        self.copy_of = {id(owner): copy for owner, copy in zip(self.owners, self.copies)}

    @contextlib.contextmanager
    def standing_in(self, params: list[Tensor]) -> Iterator[list[Tensor]]:
        """Inside: the linears hold this step's bf16 copies of their weights (the same tensors every step,
        so a compiled graph reads them as it read the last step's), and ``params`` with each stood-in weight
        replaced by its copy is what to differentiate; on exit the float32 parameters return."""
        with torch.no_grad():
            torch._foreach_copy_(self.copies, self.owners)
        for linear, copy in zip(self.linears, self.copies):
            linear._parameters["weight"] = copy
        try:
            yield [self.copy_of.get(id(p), p) for p in params]
        finally:
            for linear, owner in zip(self.linears, self.owners):
                linear._parameters["weight"] = owner
