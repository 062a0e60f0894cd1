"""FlashAttention-4's sm_90 tiles at a `seed` micro-batch's attention: one layer's forward and backward alone, over
tile settings, for FineWeb-like document lengths (``cavegpt bench``'s synthetic ones) and English text's (textmix).

FA4 picks its Hopper tiles from FA3's C++ heuristics, tuned for long sequences: forward 128 × 128, backward 64 × 128
for head_dim 128 with a causal or local mask. Here the documents are short (≈ 1,000 tokens), so a row of tiles
holds more masked keys. The forward takes its tile as arguments of ``_flash_attn_fwd`` (``tile_mn``,
``mma_pv_is_rs``, ``intra_wg_overlap``); the backward's come from ``interface._tile_size_bwd_sm90``, which is
replaced here for each setting. A setting FA4 cannot build is reported, not fatal. Each output is checked
against the default's: the largest difference is printed.

Usage (device, repo root, FA4 installed, e.g. after gpu_env.sh's install_fa4):
PYTHONPATH=src:<FA4 site> python benchmarks/fa4_tiles_gpu.py [TEXTMIX_SHARD]
(default .devdata/textmix_val/textmix_val_000000.bin; without it only the synthetic lengths). Prints a table last.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch
from flash_attn.cute import interface
from triton.testing import do_bench

from cavegpt.data.loader import document_bounds
from cavegpt.data.shards import read_tokens
from cavegpt.data.synthetic import synthetic_tokens

TOKENS, HEADS, HEAD_DIM, WINDOW = 32768, 6, 128, 1792
# forward: (tile_m, tile_n, P·V from registers, intra-warpgroup overlap); the first is FA4's own pick
FORWARD = [(128, 128, True, True), (128, 64, True, True), (128, 96, True, True), (64, 128, True, True),
           (128, 128, False, True), (128, 128, True, False), (192, 128, True, True)]
DEFAULT_BACKWARD = interface._tile_size_bwd_sm90(HEAD_DIM, HEAD_DIM, True, True)
# backward: fields of FA4's BwdConfig changed from its own pick (the first, unchanged)
BACKWARD = [{}, {"n_block_size": 64}, {"n_block_size": 96}, {"m_block_size": 128, "AtomLayoutMdQ": 2},
            {"num_stages_Q": 1, "num_stages_dO": 1}, {"AtomLayoutNdKV": 1}, {"SdP_swapAB": False}]


def launch_arguments(tokens: np.ndarray) -> dict:
    cu_seqlens, count, longest = document_bounds(tokens.reshape(1, -1))
    cu = torch.from_numpy(cu_seqlens[:count + 1]).cuda()
    return dict(cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=longest, max_seqlen_k=longest, causal=True,
                window_size_left=WINDOW - 1, window_size_right=0)


def main() -> None:
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    # 64 synthetic micro-batches; the one of median document count (a single draw can hold a 31k-token document)
    stream = synthetic_tokens(64 * TOKENS, 1000.0, np.random.default_rng(0)).reshape(64, TOKENS)
    counts = [document_bounds(row[None])[1] for row in stream]
    batches = {"synthetic": stream[np.argsort(counts)[len(counts) // 2]]}
    shard = Path(sys.argv[1] if len(sys.argv) > 1 else ".devdata/textmix_val/textmix_val_000000.bin")
    if shard.exists():
        batches["text"] = read_tokens(shard)[:TOKENS]
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, grad_out = (torch.randn(TOKENS, HEADS, HEAD_DIM, device="cuda", generator=generator,
                                     dtype=torch.bfloat16) for _ in range(4))
    rows = []
    for name, tokens in batches.items():
        launch = launch_arguments(tokens)
        print(f"{name}: {launch['cu_seqlens_q'].numel() - 1} documents, longest {launch['max_seqlen_q']}", flush=True)
        reference = None
        for tile_m, tile_n, rs, overlap in FORWARD:
            setting = dict(tile_mn=(tile_m, tile_n), mma_pv_is_rs=rs, intra_wg_overlap=overlap)
            label = f"{name}: forward {tile_m}×{tile_n}, P·V {'in registers' if rs else 'in shared memory'}, " \
                    f"overlap {overlap}"
            try:
                out, lse, *_ = interface._flash_attn_fwd(q, k, v, return_lse=True, **launch, **setting)
                ms = do_bench(lambda: interface._flash_attn_fwd(q, k, v, return_lse=True, **launch, **setting),
                              warmup=10, rep=100, return_mode="median")
            except Exception as error:  # a tile FA4 cannot build
                rows.append((f"{label}: {type(error).__name__}", float("nan"), float("nan")))
                continue
            reference = (out, lse) if reference is None else reference
            rows.append((label, ms, (out.float() - reference[0].float()).abs().max().item()))
        out, lse = reference
        expected = None
        for change in BACKWARD:
            config = dataclasses.replace(DEFAULT_BACKWARD, **change)
            interface._tile_size_bwd_sm90 = lambda *args, config=config, **kwargs: config
            label = f"{name}: backward {', '.join(f'{k}={v}' for k, v in change.items()) or 'as FA4 picks'}"
            try:
                grads = interface._flash_attn_bwd(q, k, v, out, grad_out, lse, **launch)
                ms = do_bench(lambda: interface._flash_attn_bwd(q, k, v, out, grad_out, lse, **launch),
                              warmup=10, rep=100, return_mode="median")
            except Exception as error:
                rows.append((f"{label}: {type(error).__name__}", float("nan"), float("nan")))
                continue
            expected = grads if expected is None else expected
            rows.append((label, ms, max((g.float() - e.float()).abs().max().item() for g, e in zip(grads, expected))))
    print(f"\n{'what':<84} {'ms':>7} {'max |Δ| vs FA4 pick':>20}")
    for label, ms, difference in rows:
        print(f"{label:<84} {ms:7.3f} {difference:20.4g}")


if __name__ == "__main__":
    main()
