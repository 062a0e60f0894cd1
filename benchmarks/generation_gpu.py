"""Generation speed of the full-size model on the GPU: KV cache (CUDA graph, compiled or not; eager) vs
full recomputation.

Batch 1 and 8, 512 new tokens each, greedy, bf16 autocast, bf16 matrices (as ``load_model`` stores them on
CUDA), random weights (speed does not depend on
what the weights say) with the smear gate turned well up (0.5), so that a stale smear state between
steps would show as a difference between paths. Every path is warmed up first with the timed shapes
(compiling the decode step and capturing its CUDA graph happen there, once per model and shape, as
in a session that samples repeatedly). Usage: PYTHONPATH=src python benchmarks/generation_gpu.py
"""

from __future__ import annotations

import time

import torch

from cavegpt.infer.generate import generate
from cavegpt.infer.load import inference_weights
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN

NEW_TOKENS = 512


def random_model() -> GPT:
    """The full-size model on the GPU with random weights, the smear gate turned well up (0.5)."""
    torch.manual_seed(0)
    model = GPT(ModelConfig()).cuda()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        model.smear_lambda.fill_(0.5)
    return model.eval()


def main() -> None:
    model = inference_weights(random_model())  # as load_model leaves it on CUDA: bf16 matrices
    prompts = [[EOT_TOKEN, *torch.randint(0, 50000, (20 + 7 * i,)).tolist()] for i in range(8)]
    paths = {"graph+compile": dict(compile_step=True), "cache+graph": dict(), "cache": dict(cuda_graph=False),
             "no cache": dict(use_cache=False)}
    for batch in (1, 8):
        for name, options in paths.items():
            start = time.perf_counter()
            generate(model, prompts[:batch], max_new_tokens=NEW_TOKENS if name != "no cache" else 8, **options)
            print(f"warm-up batch {batch} {name}: {time.perf_counter() - start:.1f}s", flush=True)
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | {NEW_TOKENS} new tokens, greedy")
    print(f"{'batch':>5} {'path':>11} {'seconds':>8} {'new tokens/s':>13} {'ms/token step':>13} {'speed-up':>8}")
    for batch in (1, 8):
        times, outputs = {}, {}
        for name, options in paths.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            outputs[name] = generate(model, prompts[:batch], max_new_tokens=NEW_TOKENS, **options)
            torch.cuda.synchronize()
            times[name] = time.perf_counter() - start
        steps = max(len(o) for o in outputs["cache"])
        for name in paths:
            made = sum(len(o) for o in outputs[name])
            print(f"{batch:>5} {name:>11} {times[name]:>8.2f} {made / times[name]:>13,.0f} "
                  f"{1000 * times[name] / steps:>13.2f} {times['no cache'] / times[name]:>7.1f}x")
        for name in ("graph+compile", "cache", "no cache"):
            same = sum(a == b for a, b in zip(outputs["cache+graph"], outputs[name]))
            print(f"      greedy outputs of cache+graph identical to {name} (bf16): {same}/{batch} rows")
        print(f"      lengths {[len(o) for o in outputs['cache+graph']]}")
        for name in ("cache+graph", "graph+compile"):
            print(f"      {name}:", end="")
            agreement(model, prompts[0], outputs[name][0])


@torch.no_grad()
def agreement(model: GPT, prompt: list[int], generated: list[int]) -> None:
    """Teacher-force the graphed generation through the plain training forward: does each greedy
    token match the forward's argmax, and where not, how close were the top two logits?"""
    sequence = torch.tensor([prompt + generated], device="cuda")
    model.config.attention = "sdpa"  # the same mask, dense: any length
    with torch.autocast("cuda", torch.bfloat16):
        logits = model(sequence, torch.tensor(model.config.window, device="cuda"))[0, len(prompt) - 1:-1, :50257]
    model.config.attention = "auto"
    top2 = logits.float().topk(2, -1)
    chosen = torch.tensor(generated, device="cuda")
    same = top2.indices[:, 0] == chosen
    margins = (top2.values[:, 0] - top2.values[:, 1])[~same]
    print(f" vs the training forward, teacher-forced: {int(same.sum())}/{len(generated)} greedy tokens equal; "
          f"top-2 logit gap where not: max {margins.max().item() if margins.numel() else 0:.3f}; "
          f"median gap overall {(top2.values[:, 0] - top2.values[:, 1]).median().item():.3f}")


if __name__ == "__main__":
    main()
