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
