"""Where a seed-preset step spends its time on the GPU, and A/B of the speed levers, in one device call.

Usage (device, repo root): PYTHONPATH=src python benchmarks/speed_gpu.py DATA_DIR [--steps N]

Part 1 times each piece on its own, with the shapes of one seed micro-batch (32,768 tokens): the LM
head + softcap + loss (plain, compiled; and cut-cross-entropy when installed), FlexAttention forward
+ backward for the 12 layers at windows 128 and 1792, the four optimizers' step (Muon's
Newton–Schulz separately), reading a step's 16 micro-batches, and the cost of the per-step host sync
of the NaN guard. Part 2 benches whole optimizer steps with Muon's Newton–Schulz one matrix at a time
and batched by shape, alternating on one compiled model; part 3 trains 60 steps three times from the
same seed (plain, plain again for the noise floor, batched) and compares the loss curves.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from cavegpt.config import build_config
from cavegpt.model.masks import document_ids, flex_block_mask
from cavegpt.optim.muon import newton_schulz
from cavegpt.report.bench import bench_window
from cavegpt.report.mfu import measure_matmul_peak_tflops
from cavegpt.train.trainer import Trainer

try:  # the A/B candidate that lost (see docs/BENCHMARKS.md); timed here when installed
    from cut_cross_entropy import linear_cross_entropy as fused_head_loss
except ImportError:
    fused_head_loss = None

def cuda_ms(fn, repeats: int = 5) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def pieces(data: list[str]) -> list[tuple[str, float]]:
    config = build_config("seed", data)
    trainer = Trainer(config, echo=False)
    model, T, d = trainer.model, config.data.seq_len, config.model.d_model
    out = []

    hidden = torch.randn(T, d, device="cuda", requires_grad=True)
    targets = torch.randint(0, 50257, (T,), device="cuda")
    weight = model.lm_head.weight

    def plain_head(h):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = 30 * torch.tanh(F.linear(h, weight).float() / 30)
        return F.cross_entropy(logits, targets)

    compiled_head = torch.compile(plain_head)
    out.append(("LM head + softcap + loss, fwd+bwd, compiled", cuda_ms(lambda: compiled_head(hidden).backward())))
    if fused_head_loss is not None:
        def cce():
            fused_head_loss(hidden.bfloat16(), weight.bfloat16(), targets, softcap=30.0, filter_eps=None).backward()
        out.append(("LM head + softcap + loss, fwd+bwd, cut-cross-entropy", cuda_ms(cce)))

    tokens, _, _ = trainer.train_stream.next_batch()
    docs = document_ids(tokens)
    q, k, v = (torch.randn(1, config.model.n_head, T, config.model.head_dim, device="cuda", dtype=torch.bfloat16,
                           requires_grad=True) for _ in range(3))
    attend = torch.compile(flex_attention)
    for window in (128, 1792):
        mask = flex_block_mask(docs, torch.tensor(window, device="cuda"))
        ms = cuda_ms(lambda: attend(q, k, v, block_mask=mask).sum().backward())
        out.append((f"attention fwd+bwd × 12 layers, window {window}", 12 * ms))

    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    keep = [p.grad for p in model.parameters()]

    def optimizer_step():
        for p, g in zip(model.parameters(), keep):
            p.grad = g
        trainer.optimizers.set_schedule(0)
        for optimizer in trainer.optimizers.by_name.values():
            optimizer.step()

    out.append(("optimizer step (4 groups, Muon included)", cuda_ms(optimizer_step)))
    matrices = model.param_groups()["matrices"]
    out.append((f"Newton–Schulz alone, {len(matrices)} matrices one by one",
                cuda_ms(lambda: [newton_schulz(m.grad) for m in matrices])))
    by_shape: dict[torch.Size, list[torch.Tensor]] = {}
    for m in matrices:
        by_shape.setdefault(m.shape, []).append(m.grad)
    out.append((f"Newton–Schulz alone, batched in {len(by_shape)} stacks by shape",
                cuda_ms(lambda: [newton_schulz(torch.stack(same)) for same in by_shape.values()])))
    def read_step():
        for _ in range(config.train.grad_accum):
            trainer.train_stream.next_batch()
    out.append(("reading one step's 16 micro-batches (host → GPU)", cuda_ms(read_step)))
    return out


def muon_ab(trainer: Trainer, steps: int, rounds: int = 2) -> list[tuple[str, int, float]]:
    """Whole optimizer steps with Newton–Schulz one matrix at a time vs batched by shape, alternating, same model."""
    muon = trainer.optimizers.by_name["matrices"]
    rows = []
    for _ in range(rounds):
        for batched in (False, True):
            muon.batched = batched
            for window in (1792, 128):
                r = bench_window(trainer, window, steps)
                rows.append(("batched" if batched else "one by one", window, r.tokens_per_second))
                print(f"NS {rows[-1][0]:<10} window {window}: {r.tokens_per_second:,.0f} tok/s, "
                      f"peak {r.peak_memory_gib:.2f} GiB", flush=True)
    return rows


def loss_curves(data: list[str], steps: int) -> dict[str, list[float]]:
    """Train losses of ``steps`` steps from the same seed: plain (twice, for the noise floor) and batched NS."""
    curves = {}
    for name, batched in (("plain", False), ("plain again", False), ("batched NS", True)):
        config = build_config("seed", [*data, "grad_accum=4", f"num_iterations={steps}", "cooldown_iters=20",
                                       "muon_momentum_warmup=10", "val_every=0", "save_checkpoint=false",
                                       f"log_dir=/tmp/curves", f"run_id={name.replace(' ', '_')}"])
        trainer = Trainer(config, echo=False)
        trainer.optimizers.by_name["matrices"].batched = batched
        trainer.run()
        lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
        curves[name] = [r["train_loss"] for r in map(json.loads, lines) if r["kind"] == "train"]
        del trainer
    return curves


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--curve-steps", type=int, default=60)
    parser.add_argument("--skip-pieces", action="store_true")
    args = parser.parse_args()
    data = [f"train_glob={args.data}/textmix_train_*.bin", f"val_glob={args.data}/textmix_val_*.bin",
            "val_tokens=1048576"]
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    if not args.skip_pieces:
        for name, ms in pieces(data):
            print(f"piece | {name:<58} | {ms:8.1f} ms", flush=True)
    peak = measure_matmul_peak_tflops()
    print(f"measured bf16 matmul peak {peak:.0f} TFLOP/s", flush=True)
    trainer = Trainer(build_config("seed", data), echo=False)
    compile_s = trainer.warmup()
    print(f"seed preset compile + warm-up {compile_s:.0f}s; FLOPs/token at 1792: "
          f"{trainer.flop_terms(1792).describe()}; at 128: {trainer.flop_terms(128).describe()}", flush=True)
    rows = muon_ab(trainer, args.steps)
    trainer.set_window(128)
    trainer.synchronize()
    start = time.perf_counter()
    for step in range(args.steps):
        trainer.train_step(step, guard=True).item()
    trainer.synchronize()
    guarded = args.steps * trainer.tokens_per_step / (time.perf_counter() - start)
    print(f"batched NS, window 128, with the NaN guard + loss.item() each step: {guarded:,.0f} tok/s", flush=True)
    flops = {w: trainer.flop_terms(w).per_token for w in (128, 1792)}
    del trainer
    torch.cuda.empty_cache()
    curves = loss_curves(data, args.curve_steps)
    print("\nNS | window | tokens/s | MFU")
    for name, window, tps in rows:
        print(f"{name} | {window} | {tps:,.0f} | {flops[window] * tps / (peak * 1e12):.1%}")
    floor = max(abs(a - b) for a, b in zip(curves["plain"], curves["plain again"]))
    change = max(abs(a - b) for a, b in zip(curves["plain"], curves["batched NS"]))
    print(f"loss curves over {args.curve_steps} steps (4 x 32,768 tokens per step): max |plain - plain again| = "
          f"{floor:.4f}, max |plain - batched NS| = {change:.4f}")
    print("step | plain | plain again | batched NS")
    for i in range(0, args.curve_steps, 10):
        print(f"{i + 1} | {curves['plain'][i]:.4f} | {curves['plain again'][i]:.4f} | {curves['batched NS'][i]:.4f}")
    print(f"{args.curve_steps} | {curves['plain'][-1]:.4f} | {curves['plain again'][-1]:.4f} | "
          f"{curves['batched NS'][-1]:.4f}")


if __name__ == "__main__":
    main()
