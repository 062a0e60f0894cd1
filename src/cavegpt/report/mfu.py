"""Model FLOPs utilisation, as docs/MEASURING.md defines it.

FLOPs per token = 6 × (parameters in matrix multiplies, LM head included, embedding lookups
excluded) + 12 × n_layer × d_model × (mean keys each query attends to under the causal, document and
window masks, averaged over the layers: a layer without attention counts 0, a short-window layer its
own window's), against a bf16 matmul peak measured on the same GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from cavegpt.model.masks import EOT_TOKEN

H100_SXM_DATASHEET_TFLOPS = 989.0


def mean_attended_keys(tokens: np.ndarray, window: int) -> float:
    """Mean over queries of how many keys the mask lets each see: min(window, position in document + 1).

    ``tokens`` is [B, T]; each row starts a fresh document, as the model's mask has it.
    """
    tokens = np.atleast_2d(tokens)
    total = 0
    for row in tokens:
        index = np.arange(len(row))
        starts = np.where(row == EOT_TOKEN, index, 0)
        doc_start = np.maximum.accumulate(starts)
        total += np.minimum(window, index - doc_start + 1).sum()
    return total / tokens.size


@dataclass
class FlopTerms:
    matmul_params: int
    n_layer: int
    d_model: int
    mean_keys: float

    @property
    def per_token(self) -> float:
        return 6 * self.matmul_params + 12 * self.n_layer * self.d_model * self.mean_keys

    def describe(self) -> str:
        return (f"6 × {self.matmul_params:,} + 12 × {self.n_layer} × {self.d_model} × {self.mean_keys:.1f}"
                f" = {self.per_token / 1e9:.4f} GFLOP/token")


def measure_matmul_peak_tflops(size: int = 8192, repeats: int = 10) -> float:
    """Dense bf16 matmul rate on random data (never zeros: they run faster than real data)."""
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12
