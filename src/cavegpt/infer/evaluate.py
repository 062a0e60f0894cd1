"""Validation loss and bits per byte of a model on val shards."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from cavegpt.config import ConfigError
from cavegpt.data.loader import DataConfig, validation_stream
from cavegpt.data.tokenizer import GPT2_VOCAB_SIZE, gpt2_encoding
from cavegpt.model.gpt import GPT


def token_byte_lengths() -> np.ndarray:
    encoding = gpt2_encoding()
    return np.array([len(encoding.decode_single_token_bytes(i)) for i in range(GPT2_VOCAB_SIZE)])


@torch.no_grad()
def evaluate(model: GPT, val_glob: str, val_tokens: int, seq_len: int) -> tuple[float, float]:
    """(mean loss in nats per token, bits per UTF-8 byte) over the first ``val_tokens`` target tokens."""
    device = next(model.parameters()).device
    data = DataConfig(val_glob=val_glob, seq_len=min(seq_len, val_tokens), val_tokens=val_tokens)
    try:
        data.validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    seq_len = data.seq_len
    stream = validation_stream(data, device)
    window = torch.tensor(model.config.window, device=device)
    byte_lengths = torch.from_numpy(token_byte_lengths()).to(device)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    nats, tokens, n_bytes = 0.0, 0, 0
    with autocast:
        for _ in range(val_tokens // seq_len):
            inputs, targets, _ = stream.next_batch()
            nats += model(inputs, window, targets).item() * targets.numel()
            tokens += targets.numel()
            n_bytes += int(byte_lengths[targets.clamp(max=GPT2_VOCAB_SIZE - 1)].sum())
    return nats / tokens, nats / (math.log(2) * n_bytes)
