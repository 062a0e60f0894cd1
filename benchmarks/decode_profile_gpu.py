"""Where a graphed decoding step's time goes, batch 1 against batch 8 (issue #5's batch-8 bar).

For each batch and each step kind (plain graph, compiled graph) with fp32 or bf16 matrix weights:
the GPU time of one replayed step (200 replays, no sampling, no host syncs between them), then the
heaviest kernels of the compiled step at batch 1 and 8 under the profiler. Random weights, full-size model,
a 768-slot cache at position 300 (the model of generation_gpu.py). Usage: PYTHONPATH=src python benchmarks/decode_profile_gpu.py
"""

from __future__ import annotations

import copy
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cavegpt.infer.generate import _decoder
from cavegpt.model.gpt import GPT
from generation_gpu import random_model  # this folder is on sys.path when the script runs

REPLAYS = 200


def bf16_matrices(model: GPT) -> GPT:
    """A copy whose nn.Linear weights are stored in bf16 (autocast then has nothing to cast)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data = module.weight.data.bfloat16()
    return model


@torch.no_grad()
def step_time(model: GPT, batch: int, compiled: bool) -> tuple[float, object]:
    step = _decoder(model, batch, 768, torch.device("cuda"), compiled)
    tokens = torch.randint(0, 50000, (batch, 1), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(300):  # first call, capture, and fill half the cache
            step(tokens)
    torch.cuda.synchronize()
    step.cache.length.fill_(300)
    start = time.perf_counter()
    for _ in range(REPLAYS):
        step.graph.replay()
        step.cache.length.fill_(300)  # stay at the same cache position
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / REPLAYS, step


def main() -> None:
    base = random_model()
    models = {"fp32 weights": base, "bf16 matrices": bf16_matrices(base)}
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | ms per replayed step")
    print(f"{'weights':>14} {'batch':>5} {'graph':>8} {'compiled':>9}")
    steps = {}
    for label, model in models.items():
        for batch in (1, 8):
            plain, _ = step_time(model, batch, False)
            compiled, steps[(label, batch)] = step_time(model, batch, True)
            print(f"{label:>14} {batch:>5} {plain:>8.3f} {compiled:>9.3f}", flush=True)
    for key in (("fp32 weights", 1), ("fp32 weights", 8)):
        step = steps[key]
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                step.graph.replay()
            torch.cuda.synchronize()
        print(f"\ncompiled step, {key}: kernels over 10 replays")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=70))


if __name__ == "__main__":
    main()
