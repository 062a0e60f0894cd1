"""Sampling text from a trained GPT, with or without a KV cache, one prompt or a batch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from cavegpt.infer.kv_cache import KVCache
from cavegpt.model.gpt import GPT
from cavegpt.model.masks import EOT_TOKEN

GPT2_VOCAB = 50257  # logits past this are vocabulary padding: never sampled

CANNED_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "The most important thing to remember about learning to program is",
    "In 1969, astronauts",
    "def fibonacci(n):",
]
CANNED_TEMPERATURES = (0.0, 0.7, 1.0)


def sample_next(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator) -> Tensor:
    """[B, V] logits → [B] token ids. Temperature 0 is greedy."""
    logits = logits[:, :GPT2_VOCAB].float()
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest set whose mass reaches top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _GraphedStep:
    """One cached decoding step (B tokens in, last logits out) captured in a CUDA graph.

    The first call runs eagerly on a side stream (warming up cuBLAS and the allocator, compiling when
    asked, and doing the step's real work); the second captures, then replays; later calls only
    replay. Between calls only ``tokens`` changes; the cache's buffers are updated in place by the
    graph itself. One lives per (model, batch, cache size), so later ``generate`` calls of that
    shape replay the same graph (see :func:`_decoder`).
    """

    def __init__(self, model: GPT, cache: KVCache, batch: int, device: torch.device, compile_step: bool):
        self.model, self.cache = model, cache
        self.window = torch.tensor(model.config.window, device=device)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.valid = torch.ones(batch, 1, dtype=torch.bool, device=device)
        self.step = torch.compile(self._step, dynamic=False) if compile_step else self._step
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0

    def _step(self) -> Tensor:
        # autocast's cache of bf16 weight copies dies with the caller's autocast block, but the graph
        # outlives it: the casts must be part of the graph itself
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            self.cache.begin(self.tokens, self.valid)
            return self.model(self.tokens, self.window, cache=self.cache)[:, -1]

    def __call__(self, tokens: Tensor) -> Tensor:
        self.tokens.copy_(tokens)
        self.calls += 1
        if self.calls == 1:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                logits = self.step()
            torch.cuda.current_stream().wait_stream(side)
            return logits
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self.step()
        self.graph.replay()
        return self.logits


CACHE_ROUNDING = 256  # cache sizes are rounded up to this, so calls of similar lengths share a graph


def _decoder(model: GPT, batch: int, length: int, device: torch.device, compile_step: bool) -> _GraphedStep:
    """The persistent graphed step for this model and shape (kept on the model), with its cache emptied."""
    size = min(-(-length // CACHE_ROUNDING) * CACHE_ROUNDING, model.config.max_seq_len)
    decoders = model.__dict__.setdefault("_graphed_decoders", {})
    key = (batch, size, compile_step)
    if key not in decoders:
        cache = KVCache(model.config, batch, size, device, torch.bfloat16)
        decoders[key] = _GraphedStep(model, cache, batch, device, compile_step)
    decoders[key].cache.reset()
    return decoders[key]


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens: int = 256, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, seed: int = 0, use_cache: bool = True,
             on_token: Callable[[Tensor, Tensor], None] | None = None, cuda_graph: bool = True,
             compile_step: bool = False) -> list[list[int]]:
    """Continue each prompt until EOT or ``max_new_tokens``; returns the new tokens (EOT not included).

    Prompts of different lengths are left-padded into one batch. ``use_cache=False`` recomputes the
    whole sequence for every new token (the reference the cache is tested against).
    ``on_token(tokens [B], finished [B])`` is called after each step, for streaming. On a GPU the
    cached decoding step runs as a replayed CUDA graph (``cuda_graph=False`` runs it eagerly), kept for
    later calls of the same batch size and length; ``compile_step`` also compiles it with torch.compile.
    """
    device = next(model.parameters()).device
    batch, prompt_len = len(prompts), max(len(p) for p in prompts)
    if min(len(p) for p in prompts) == 0:
        raise ValueError("every prompt needs at least one token (start it with EOT 50256)")
    tokens = torch.zeros(batch, prompt_len, dtype=torch.long, device=device)
    valid = torch.zeros(batch, prompt_len, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, prompt_len - len(prompt):] = torch.tensor(prompt, device=device)
        valid[row, prompt_len - len(prompt):] = True
    window = torch.tensor(model.config.window, device=device)
    generator = torch.Generator(device).manual_seed(seed)
    total_len = prompt_len + max_new_tokens
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # what attention sees under autocast
    graphed = None
    if use_cache and cuda_graph and device.type == "cuda":
        graphed = _decoder(model, batch, total_len, device, compile_step)
        cache = graphed.cache
    else:
        cache = KVCache(model.config, batch, total_len, device, dtype) if use_cache else None
    chunk, chunk_valid = tokens, valid
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in prompts]
    with _autocast(device):
        for _ in range(max_new_tokens):
            if graphed is not None and chunk.size(1) == 1:
                logits = graphed(chunk)
            elif use_cache:
                cache.begin(chunk, chunk_valid)
                logits = model(chunk, window, cache=cache)[:, -1]
            else:
                fresh = KVCache(model.config, batch, tokens.size(1), device, dtype)
                fresh.begin(tokens, valid)
                logits = model(tokens, window, cache=fresh)[:, -1]
            next_token = sample_next(logits, temperature, top_k, top_p, generator)
            next_token = torch.where(finished, EOT_TOKEN, next_token)
            for row, (token, done) in enumerate(zip(next_token.tolist(), finished.tolist())):  # one host sync
                if not done and token != EOT_TOKEN:
                    out[row].append(token)
            finished |= next_token == EOT_TOKEN
            if on_token is not None:
                on_token(next_token, finished)
            if finished.all():
                break
            chunk, chunk_valid = next_token[:, None], torch.ones(batch, 1, dtype=torch.bool, device=device)
            tokens, valid = torch.cat([tokens, chunk], 1), torch.cat([valid, chunk_valid], 1)
    return out
