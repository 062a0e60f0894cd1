"""The training loop: gradient accumulation, bf16 autocast, torch.compile, validation, target stop."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from cavegpt.data.loader import TokenStream, find_shards, validation_stream
from cavegpt.model.gpt import GPT
from cavegpt.optim.optimizers import Optimizers
from cavegpt.optim.schedules import attention_window
from cavegpt.train.checkpoint import checkpoint_name, save_checkpoint
from cavegpt.train.runlog import RunLog, new_run_id, step_line


@dataclass
class TrainConfig:
    """The loop. Defaults are the seed's: 1750 steps of 16 accumulated micro-batches."""

    num_iterations: int = 1750
    grad_accum: int = 16  # micro-batches per optimizer step
    val_every: int = 125  # validate every N steps (0: only at the end)
    target_val_loss: float | None = None  # stop at the first validation at or under this
    window_start: int = 64  # attention window at step 0; grows to model.window
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if present), "cuda", "cpu"
    compile: bool = True  # torch.compile the model (CUDA only)
    bf16: bool = True  # bf16 autocast (CUDA only)
    log_dir: str = "logs"
    run_id: str = ""  # empty: a timestamped id
    log_every: int = 1  # train-loss lines every N steps
    save_checkpoint: bool = True

    def validate(self) -> None:
        if self.num_iterations < 1 or self.grad_accum < 1:
            raise ValueError("num_iterations and grad_accum must be >= 1")
        if self.val_every < 0 or self.log_every < 1:
            raise ValueError("val_every must be >= 0 and log_every >= 1")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device={self.device!r}: choose auto, cuda or cpu")
        if self.window_start < 1:
            raise ValueError(f"window_start={self.window_start} must be >= 1")


@dataclass
class RunResult:
    run_dir: Path
    final_step: int
    final_val_loss: float
    train_time_ms: float
    compile_seconds: float
    target_step: int | None = None
    target_time_ms: float | None = None
    checkpoint: Path | None = None


class DeviceError(RuntimeError):
    """The device asked for is not there."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("this preset needs a CUDA GPU (device=cuda) and PyTorch sees none. "
                          "Use --preset tiny to train on the CPU, or device=cpu (slow).")
    return torch.device(name)


class Trainer:
    """Owns the model, the optimizers and the data streams of one run."""

    def __init__(self, config, echo: bool = True):
        self.config = config
        self.device = resolve_device(config.train.device)
        self.echo = echo
        model_cfg, data_cfg, train_cfg = self.config.model, self.config.data, self.config.train
        self.on_cuda = self.device.type == "cuda"

        torch.manual_seed(train_cfg.seed)
        self.model = GPT(model_cfg).to(self.device)
        self.optimizers = Optimizers(self.model.param_groups(), self.config.optim, train_cfg.num_iterations)
        self.forward = torch.compile(self.model, dynamic=False) if train_cfg.compile and self.on_cuda else self.model
        self.train_stream = TokenStream(find_shards(data_cfg.train_glob, "train"), data_cfg.seq_len,
                                        data_cfg.batch_size, self.device)
        self.val_stream = validation_stream(data_cfg, self.device)
        self.window = torch.tensor(train_cfg.window_start, dtype=torch.int32, device=self.device)
        self.window_tokens = -1

    @property
    def tokens_per_step(self) -> int:
        return self.config.data.micro_batch_tokens * self.config.train.grad_accum

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.on_cuda and self.config.train.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def set_window(self, tokens: int) -> None:
        if tokens != self.window_tokens:  # fill_ is a device write, no host sync
            self.window.fill_(tokens)
            self.window_tokens = tokens

    def window_at(self, step: int) -> int:
        train = self.config.train
        return attention_window(step, train.num_iterations, train.window_start, self.config.model.window)

    def train_step(self, step: int) -> Tensor:
        """One optimizer step over ``grad_accum`` micro-batches; returns the mean loss (on device)."""
        accum = self.config.train.grad_accum
        total = torch.zeros((), device=self.device)
        for _ in range(accum):
            inputs, targets = self.train_stream.next_batch()
            with self.autocast():
                loss = self.forward(inputs, self.window, targets)
            (loss / accum).backward()
            total += loss.detach()
        self.optimizers.step(step)
        return total / accum

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the first ``val_tokens`` of the val shards."""
        self.val_stream.seek(0, 0)
        steps = self.config.data.val_tokens // self.config.data.micro_batch_tokens
        total = torch.zeros((), device=self.device)
        for _ in range(steps):
            inputs, targets = self.val_stream.next_batch()
            with self.autocast():
                total += self.forward(inputs, self.window, targets)
        return (total / steps).item()

    def warmup(self) -> float:
        """Compile (or just touch) the training and validation graphs; leaves weights untouched."""
        start = time.perf_counter()
        position = self.train_stream.position
        inputs, targets = self.train_stream.next_batch()
        with self.autocast():
            self.forward(inputs, self.window, targets).backward()
        self.optimizers.zero_grad()
        with torch.no_grad(), self.autocast():
            self.forward(inputs, self.window, targets)
        self.train_stream.seek(*position)
        self.synchronize()
        return time.perf_counter() - start

    def synchronize(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize()

    def state(self, step: int, val_loss: float) -> dict:
        return {"model": self.model.state_dict(), "optimizers": self.optimizers.state_dict(),
                "config": asdict(self.config), "step": step, "val_loss": val_loss,
                "train_position": self.train_stream.position}

    def run(self) -> RunResult:
        train = self.config.train
        total = train.num_iterations
        run_dir = Path(train.log_dir) / (train.run_id or new_run_id())
        log = RunLog(run_dir, echo=self.echo)
        log.write_config(asdict(self.config))
        log.line(f"run {run_dir} | device {self.device} | torch {torch.__version__} | "
                 f"{sum(p.numel() for p in self.model.parameters()):,} parameters | "
                 f"{self.tokens_per_step:,} tokens/step")
        compile_seconds = self.warmup()
        log.line(f"warm-up (compile) {compile_seconds:.1f}s")

        train_ms, target_step, target_ms, val_loss = 0.0, None, None, float("nan")
        self.synchronize()
        t0 = time.perf_counter()
        step = 0
        for step in range(total + 1):
            last = step == total
            self.set_window(self.window_at(step))
            if last or (train.val_every and step % train.val_every == 0):
                self.synchronize()
                train_ms += 1000 * (time.perf_counter() - t0)
                val_loss = self.evaluate()
                log.line(step_line(step, total, train_ms, step, val_loss=val_loss))
                if train.target_val_loss is not None and val_loss <= train.target_val_loss:
                    target_step, target_ms = step, train_ms
                    log.line(f"target val_loss<={train.target_val_loss} reached at step {step}, "
                             f"train_time:{train_ms:.0f}ms")
                    last = True
                self.synchronize()
                t0 = time.perf_counter()
            if last:
                break
            loss = self.train_step(step)
            if (step + 1) % train.log_every == 0 or step + 1 == total:
                loss_value = loss.item()  # the only host sync of a logged step
                elapsed = train_ms + 1000 * (time.perf_counter() - t0)
                log.line(step_line(step + 1, total, elapsed, step + 1, train_loss=loss_value))

        checkpoint = None
        if train.save_checkpoint:
            checkpoint = save_checkpoint(run_dir / checkpoint_name(step, val_loss), self.state(step, val_loss))
            log.line(f"saved {checkpoint}")
        return RunResult(run_dir, step, val_loss, train_ms, compile_seconds, target_step, target_ms, checkpoint)
