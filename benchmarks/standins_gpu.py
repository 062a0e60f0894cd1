"""Where the bf16 stand-ins' gradients part from autocast's own on a GPU (cavegpt.train.bf16_weights).

The `tiny` preset, compiled, from the same weights and tokens: each parameter's float32 `.grad` after one
micro-batch, then its change over three optimizer steps, with the stand-ins, without, and without again (the
run-to-run floor), as |Δ| / |size|, largest first. On the CPU (compiled or not) the three are bit for bit alike;
session 16's GPU test saw the stand-ins' three steps part more.

Usage (device, repo root): PYTHONPATH=src python benchmarks/standins_gpu.py [key=value ...]
"""
import os
import sys
import tempfile

import torch

from cavegpt.config import build_config
from cavegpt.train.distributed import rank_batches
from cavegpt.train.trainer import Trainer


STEPS = 3


def run(stand_in: bool, log_dir: str, *overrides: str) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    """(each parameter's gradient after one micro-batch, its change after each of STEPS optimizer steps)"""
    trainer = Trainer(build_config("tiny", ["device=cuda", f"log_dir={log_dir}", *sys.argv[1:], *overrides]), echo=False)
    if not stand_in:
        trainer.bf16_weights = None
    trainer.accumulate(rank_batches(trainer.train_stream, 1, trainer.world), 0)
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad(set_to_none=True)
    start = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    changes = []
    for step in range(STEPS):
        trainer.train_step(step)
        changes.append({name: p.detach() - start[name] for name, p in trainer.model.named_parameters()})
    trainer.close()
    return grads, changes


def table(title: str, stand_in: dict, plain: dict, repeat: dict) -> None:
    rows = []
    for name, g in plain.items():
        size = g.norm().clamp_min(1e-30)
        rows.append((((stand_in[name] - g).norm() / size).item(), ((repeat[name] - g).norm() / size).item(),
                     name, tuple(g.shape)))
    print(f"{'stand-ins':>10} {'repeat':>10}  parameter (|Δ| / |{title}|)")
    for parted, floor, name, shape in sorted(rows, reverse=True)[:12]:
        print(f"{parted:10.2e} {floor:10.2e}  {name} {shape}")
    alike = [sum(row[i] == 0 for row in rows) for i in (0, 1)]
    print(f"parameters alike bit for bit: stand-ins {alike[0]}, repeat {alike[1]} of {len(rows)}")


def main() -> None:
    with tempfile.TemporaryDirectory() as log_dir:
        if os.environ.get("PLAIN_FIRST"):  # the same three, the plain run first: does the first run part?
            plain, stand_in, repeat = (run(s, log_dir) for s in (False, True, False))
            runs = [stand_in, plain, repeat]
        else:
            runs = [run(s, log_dir) for s in (True, False, False)]
        if os.environ.get("EAGER"):  # which of the compiled runs is right: both against the plain run uncompiled
            eager = run(False, log_dir, "compile=false")
            runs = [runs[0], eager, runs[1]]
            print("second column: the compiled plain run; both against the plain run uncompiled")
    table("grad, one micro-batch", *(grads for grads, _ in runs))
    for step in range(STEPS):
        table(f"change after step {step}", *(changes[step] for _, changes in runs))


if __name__ == "__main__":
    main()
