"""Where the bf16 stand-ins' gradients part from autocast's own on a GPU (cavegpt.train.bf16_weights).

The `tiny` preset, compiled, one micro-batch from the same weights and tokens: each parameter's float32 `.grad`
with the stand-ins, without, and without again (the run-to-run floor), as |Δ| / |grad|, largest first. On the CPU
(compiled or not) the three are bit for bit alike; session 16's GPU test saw the stand-ins' run part more.

Usage (device, repo root): PYTHONPATH=src python benchmarks/standins_gpu.py [key=value ...]
"""
import sys
import tempfile

import torch

from cavegpt.config import build_config
from cavegpt.train.distributed import rank_batches
from cavegpt.train.trainer import Trainer, accumulate_gradients


def gradients(stand_in: bool, log_dir: str) -> dict[str, torch.Tensor]:
    trainer = Trainer(build_config("tiny", ["device=cuda", f"log_dir={log_dir}", *sys.argv[1:]]), echo=False)
    if not stand_in:
        trainer.bf16_weights = None
    with trainer.training_weights() as differentiated:
        for inputs, targets, documents in rank_batches(trainer.train_stream, 1, trainer.world):
            objective, _ = trainer.train_forward(inputs, targets, documents, 0)
            accumulate_gradients(objective, differentiated, trainer.trainable)
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.close()
    return grads


def main() -> None:
    with tempfile.TemporaryDirectory() as log_dir:
        stand_in, plain, repeat = (gradients(s, log_dir) for s in (True, False, False))
    rows = []
    for name, g in plain.items():
        size = g.norm().clamp_min(1e-30)
        rows.append((((stand_in[name] - g).norm() / size).item(), ((repeat[name] - g).norm() / size).item(),
                     name, tuple(g.shape)))
    print(f"{'stand-ins':>10} {'repeat':>10}  parameter (|Δ grad| / |grad|, one micro-batch)")
    for parted, floor, name, shape in sorted(rows, reverse=True)[:25]:
        print(f"{parted:10.2e} {floor:10.2e}  {name} {shape}")
    alike = [sum(row[i] == 0 for row in rows) for i in (0, 1)]
    print(f"parameters alike bit for bit: stand-ins {alike[0]}, repeat {alike[1]} of {len(rows)}")


if __name__ == "__main__":
    main()
