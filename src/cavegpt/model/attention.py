"""Attention over packed documents: one rule (:mod:`cavegpt.model.masks`), three implementations.

* ``flex``: FlexAttention with a BlockMask built from the batch's EOT positions (any CUDA GPU).
* ``sdpa``: ``scaled_dot_product_attention`` with the same mask as a dense matrix (the CPU path:
  FlexAttention has no backward there; also the tests' reference).
* ``fa4``: FlashAttention-4 (the optional ``flash-attn-4`` package, ``pip install "cavegpt[fa4]"``)
  over variable-length documents (:mod:`cavegpt.model.fa4`). It needs the documents' boundaries as
  ``cu_seqlens``, which the loader computes on the host from the batch it already holds
  (:func:`cavegpt.data.loader.document_bounds`), so no GPU sync is needed; the trainer passes them
  as ``documents``.
* ``auto``: ``fa4`` where it is installed and supports the GPU, ``flex`` on other GPUs, ``sdpa``
  on the CPU.

Every :data:`Attend` takes q, k, v as ``[B, T, H, D]`` and returns ``[B, T, H, D]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import flex_attention

from cavegpt.model.masks import dense_mask, document_ids, flex_block_mask

Attend = Callable[[Tensor, Tensor, Tensor], Tensor]  # (q, k, v) [B, T, H, D] → [B, T, H, D]
ATTENTION_BACKENDS = ("auto", "fa4", "flex", "sdpa")


class Documents(NamedTuple):
    """A batch's documents for the variable-length path: where each starts in the flattened batch."""

    cu_seqlens: Tensor  # int32, on the GPU: [B·T + 1], the starts, then B·T repeated (only count + 1 are read)
    sizes: Tensor  # int64, on the CPU: (count, longest), host integers FlashAttention-4 needs at launch


def resolve_attention(name: str, device: torch.device) -> str:
    """The implementation ``name`` (a ``ModelConfig.attention`` value) stands for on ``device``.

    Raises ValueError with the reason when ``fa4`` is asked for and cannot run here.
    """
    if device.type != "cuda":
        if name == "fa4":
            raise ValueError("attention=fa4 needs a CUDA GPU")
        return "sdpa" if name == "auto" else name
    if name in ("auto", "fa4"):
        from cavegpt.model.fa4 import fa4_unavailable
        reason = fa4_unavailable(device)
        if reason is None:
            return "fa4"
        if name == "fa4":
            raise ValueError(f"attention=fa4: {reason}")
        return "flex"
    return name


def attention_for(backend: str, tokens: Tensor, windows: Sequence[Tensor],
                  documents: Documents | None = None) -> list[Attend]:
    """The masked attention over this batch of packed documents at each of ``windows`` (the model asks for the
    schedule's window and, with short-window layers, half of it); the documents are found once for all.

    With ``documents``, FlashAttention-4 (a window then lives on the CPU); without, FlexAttention on CUDA
    unless ``backend`` is ``sdpa``, and SDPA elsewhere.
    """
    if documents is not None:
        from cavegpt.model.fa4 import fa4_attention
        return [functools.partial(fa4_attention, documents=documents, window=window) for window in windows]
    docs = document_ids(tokens)
    masked = _flex if backend != "sdpa" and tokens.is_cuda else _sdpa
    return [masked(docs, window.to(tokens.device)) for window in windows]


def _flex(docs: Tensor, window: Tensor) -> Attend:
    block_mask = flex_block_mask(docs, window)
    return lambda q, k, v: _heads_second(flex_attention, q, k, v, block_mask=block_mask)


def _sdpa(docs: Tensor, window: Tensor) -> Attend:
    mask = dense_mask(docs, window)
    return lambda q, k, v: _heads_second(F.scaled_dot_product_attention, q, k, v, attn_mask=mask)


def _heads_second(attend: Callable[..., Tensor], q: Tensor, k: Tensor, v: Tensor, **mask) -> Tensor:
    """Run an attention that takes ``[B, H, T, D]`` on ``[B, T, H, D]`` tensors."""
    return attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), **mask).transpose(1, 2)
