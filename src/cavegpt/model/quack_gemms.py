"""Where quack's GEMMs (``quack-kernels``, the CuTe-DSL kernel library installed with FlashAttention-4 by the ``fa4``
extra) serve the fused MLP's products (:mod:`cavegpt.model.relu_square_quack`) and the fused head's forward product
(:mod:`cavegpt.model.head_loss`), when ``ModelConfig.quack_gemms`` asks for them. This module does not import quack,
so the check costs nothing where it is absent.
"""

from __future__ import annotations

import importlib.metadata

import torch

# the quack-kernels release whose epilogue API cavegpt.model.relu_square_quack is written against and measured with
# (pyproject's fa4 extras pin it); the API is young, so another release keeps the Triton kernels and cuBLAS
MEASURED_QUACK = "0.6.5"


def _quack_version() -> str | None:
    try:
        return importlib.metadata.version("quack-kernels")
    except importlib.metadata.PackageNotFoundError:
        return None


QUACK_INSTALLED = _quack_version() == MEASURED_QUACK


def quack_runs_on(device: torch.device) -> bool:
    """quack's GEMMs serve ``device``: quack-kernels ``MEASURED_QUACK`` is installed and the GPU is sm_90 (Hopper), the
    one family measured (docs/BENCHMARKS.md, session 24); elsewhere the Triton kernels and cuBLAS do the products.
    (Called inside the compiled forward: torch.compile folds ``get_device_properties`` to a constant.)"""
    return QUACK_INSTALLED and device.type == "cuda" and torch.cuda.get_device_properties(device).major == 9


# the fused head's column tile on quack (cavegpt.model.head_loss_quack): its epilogue sums each row's terms by tile, so
# the tile must divide the vocabulary (a partial tile's out-of-bounds columns would add terms of a zero logit); 192
# divides GPT-2's 50,304 and was the fastest measured (128 took 4.22 ms a `seed` micro-batch against 3.64 on an H100,
# docs/BENCHMARKS.md, session 25; quack's own fused cross-entropy prefers 192 too)
HEAD_COLUMN_TILE = 192


def head_column_tile(vocab: int) -> int | None:
    """The fused head's column tile on quack for a vocabulary of ``vocab`` (None: it does not divide it, so the head's
    product stays cuBLAS's and the row kernel reads the logits)."""
    return HEAD_COLUMN_TILE if vocab % HEAD_COLUMN_TILE == 0 else None
