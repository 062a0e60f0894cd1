"""A key/value cache that reproduces, token by token, what the training forward computes.

Everything in the model that looks backwards is kept here: keys and values of every layer that
attends (rotary already applied), each row's token positions, document ids (a new document at each
EOT) for the document mask, the sliding windows (the model's final one; half of it in short-window
layers), and the embedding and id of each row's latest token (the smear gate; the bigram embedding).
Rows may start with left padding (batched prompts of different lengths): padding is invisible to
every real token, takes no position, and does not smear into the next token.

Every buffer has a fixed size and every update is a tensor operation (no Python integers that
change from token to token), so one decoding step can be captured in a CUDA graph and replayed.
Attention always spans the whole buffer; the masks hide the slots not yet written.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from cavegpt.model.attention import Attend
from cavegpt.model.gpt import ModelConfig
from cavegpt.model.masks import EOT_TOKEN


class KVCache:
    def __init__(self, config: ModelConfig, batch: int, max_len: int, device: torch.device | str,
                 dtype: torch.dtype = torch.float32):
        if max_len > config.max_seq_len:
            raise ValueError(f"{max_len} tokens exceed the model's rotary table ({config.max_seq_len})")
        self.config, self.max_len = config, max_len
        # the window each layer attends over: the model's final one, half of it in short-window layers, 0 for none
        self.layer_windows = [config.layer_window(layer, config.window) for layer in range(config.n_layer)]
        # one buffer per layer, written by index assignment: a compiled step then updates the slots in
        # place (views of one big buffer written with index_copy_ were copied whole at every step, 1.4 ms
        # of a 3.0 ms batch-8 step on an H100)
        shape = (batch, config.n_head, max_len, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) if w else None for w in self.layer_windows]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) if w else None for w in self.layer_windows]
        self.docs = torch.full((batch, max_len), -1, dtype=torch.long, device=device)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.slots = torch.arange(max_len, device=device)
        self.length = torch.zeros((), dtype=torch.long, device=device)
        self.docs_so_far = torch.zeros(batch, dtype=torch.long, device=device)
        self.positions_so_far = torch.zeros(batch, dtype=torch.long, device=device)
        self.last_embedding = torch.zeros(batch, 1, config.d_model, device=device)
        self.last_token = torch.full((batch,), -1, dtype=torch.long, device=device)

    def reset(self) -> None:
        """Empty the cache in place, keeping its buffers (a captured CUDA graph points at them)."""
        self.docs.fill_(-1)
        self.valid.zero_()
        self.length.zero_()
        self.docs_so_far.zero_()
        self.positions_so_far.zero_()
        self.last_embedding.zero_()
        self.last_token.fill_(-1)

    def begin(self, tokens: Tensor, valid: Tensor) -> None:
        """Prepare positions and the mask for the chunk ``tokens`` [B, T] (``valid`` False = padding)."""
        chunk = self.length + torch.arange(tokens.size(1), device=tokens.device)  # cache slots of the chunk
        eot = (tokens == EOT_TOKEN) & valid
        docs = torch.where(valid, self.docs_so_far[:, None] + eot.cumsum(-1), -1)
        self.docs.index_copy_(1, chunk, docs)
        self.valid.index_copy_(1, chunk, valid)
        self.positions = self.positions_so_far[:, None] + (valid.cumsum(-1) - 1).clamp(min=0)
        q_idx, k_idx = chunk[:, None], self.slots[None, :]
        allowed = (k_idx <= q_idx) & (self.docs[:, None, :] == docs[:, :, None]) & self.valid[:, None, :]
        self.masks = {window: ((allowed & (q_idx - k_idx < window)) | (k_idx == q_idx))[:, None]  # padding sees
                      for window in set(self.layer_windows) - {0}}  # only itself: no empty rows
        self.chunk, self.chunk_valid = chunk, valid
        self.chunk_has_valid = valid.any(-1)
        self.chunk_last = (valid.cumsum(-1) == valid.sum(-1, keepdim=True)) & valid  # each row's last real token
        self.docs_so_far += eot.sum(-1)
        self.positions_so_far += valid.sum(-1)
        self.length += tokens.size(1)

    def smear_inputs(self, embedded: Tensor) -> tuple[Tensor, Tensor]:
        """(embedding before the chunk, the chunk's embeddings with padding zeroed) for the smear gate."""
        embedded = embedded * self.chunk_valid[..., None]
        previous = self.last_embedding.to(embedded.dtype, copy=True)  # the buffer is overwritten below
        last_embedding = (embedded * self.chunk_last[..., None]).sum(1, keepdim=True)
        # in place: a replayed CUDA graph reads this very buffer at the next step
        self.last_embedding.copy_(torch.where(self.chunk_has_valid[:, None, None], last_embedding.float(),
                                              self.last_embedding))
        return previous, embedded

    def previous_tokens(self, tokens: Tensor) -> Tensor:
        """The token before each of the chunk's (-1: none, as at a row's start or after padding)."""
        valid = self.chunk_valid
        shifted = torch.cat([self.last_token[:, None], tokens[:, :-1]], dim=1)
        shifted_valid = torch.cat([torch.ones_like(valid[:, :1]), valid[:, :-1]], dim=1)
        previous = torch.where(shifted_valid, shifted, self.last_token[:, None])  # padding is only on the left
        last_token = (tokens * self.chunk_last).sum(-1)
        # in place, like last_embedding: a replayed CUDA graph reads this buffer at the next step
        self.last_token.copy_(torch.where(self.chunk_has_valid, last_token, self.last_token))
        return previous

    def attention(self, layer: int) -> Attend:
        """Attention for ``layer``: store this chunk's keys/values, attend over the whole cache."""
        window = self.layer_windows[layer]

        def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [B, T, H, D], stored as [B, H, T, D]
            keys, values = self.keys[layer], self.values[layer]
            keys[:, :, self.chunk] = k.transpose(1, 2).to(keys.dtype)
            values[:, :, self.chunk] = v.transpose(1, 2).to(values.dtype)
            # cuDNN's attention plans anew for every shape (≈ 5 ms of CPU a call, measured on an H100)
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                out = F.scaled_dot_product_attention(q.transpose(1, 2), keys.to(q.dtype), values.to(q.dtype),
                                                     attn_mask=self.masks[window])
            return out.transpose(1, 2)
        return attend
