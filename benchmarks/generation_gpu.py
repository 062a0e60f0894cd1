"""Generation speed of the full-size model on the GPU: KV cache vs full recomputation.

Batch 1 and 8, 512 new tokens each, greedy, bf16 autocast, random weights (speed does not depend on
what the weights say). Usage: PYTHONPATH=src python benchmarks/generation_gpu.py
"""

from __future__ import annotations

import time

import torch

from cavegpt.infer.generate import generate
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN

NEW_TOKENS = 512


def main() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig()).cuda().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    prompts = [[EOT_TOKEN, *torch.randint(0, 50000, (20 + 7 * i,)).tolist()] for i in range(8)]
    generate(model, prompts[:2], max_new_tokens=8)
    generate(model, prompts[:2], max_new_tokens=8, use_cache=False)
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | {NEW_TOKENS} new tokens, greedy")
    print(f"{'batch':>5} {'path':>9} {'seconds':>8} {'new tokens/s':>13} {'ms/token step':>13} {'speed-up':>8}")
    for batch in (1, 8):
        times, outputs = {}, {}
        for use_cache in (True, False):
            torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[use_cache] = generate(model, prompts[:batch], max_new_tokens=NEW_TOKENS, use_cache=use_cache)
            torch.cuda.synchronize()
            times[use_cache] = time.perf_counter() - start
        steps = max(len(o) for o in outputs[True])
        for use_cache in (True, False):
            made = sum(len(o) for o in outputs[use_cache])
            print(f"{batch:>5} {'cache' if use_cache else 'no cache':>9} {times[use_cache]:>8.2f} "
                  f"{made / times[use_cache]:>13,.0f} {1000 * times[use_cache] / steps:>13.2f} "
                  f"{times[False] / times[True] if use_cache else 1.0:>7.1f}x")
        same = sum(a == b for a, b in zip(outputs[True], outputs[False]))
        print(f"      greedy outputs identical with and without cache (bf16): {same}/{batch} rows; "
              f"lengths {[len(o) for o in outputs[True]]}")


if __name__ == "__main__":
    main()
