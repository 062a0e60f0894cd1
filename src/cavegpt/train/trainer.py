"""The training loop: gradient accumulation, bf16 autocast, torch.compile, validation, target stop."""

from __future__ import annotations

import contextlib
import functools
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from cavegpt.data.loader import Batch, TokenStream, find_shards, validation_stream
from cavegpt.model.attention import Documents, resolve_attention
from cavegpt.model.gpt import GPT
from cavegpt.model.head_loss import weight_copies_held
from cavegpt.model.quack_gemms import quack_runs_on
from cavegpt.optim.optimizers import Optimizers
from cavegpt.optim.schedules import attention_window, micro_batches, mtp_weights, tokens_before
from cavegpt.report.environment import environment
from cavegpt.report.mfu import FlopTerms, mean_attended_keys, measure_matmul_peak_tflops
from cavegpt.train.bf16_weights import Bf16Weights
from cavegpt.train.checkpoint import checkpoint_name, prune_checkpoints, save_checkpoint
from cavegpt.train.compile_workers import RELEASE_TIMEOUT_S, release_compile_workers
from cavegpt.train.display import LiveDisplay
from cavegpt.train.distributed import (
    any_rank, broadcast_parameters, join_world, leave_world, local_micro_batches, rank_batches, sum_over_ranks)
from cavegpt.train.guards import NonFiniteError, StopSignals, check_finite, gradient_health
from cavegpt.train.loggers import LOGGERS, open_sink
from cavegpt.train.runlog import RunLog, new_run_id, step_line
from cavegpt.train.sharding import ShardedStep


# Muon's group first: under torchrun its Newton–Schulz iterations run while the embedding tables'
# gradients, the largest, are still being summed over the ranks, and its all-gathers while Adam steps
STEP_ORDER = ("matrices", "lm_head", "scalars", "embeddings")


def accumulate_gradients(loss: Tensor, params: list[Tensor], owners: list[Tensor] | None = None,
                         compiled_adds: bool = False) -> None:
    """``loss.backward()`` for ``params``, with the new gradients added into ``.grad`` by multi-tensor adds.

    Autograd's own accumulation launches one add per parameter as its gradient arrives: about 110 kernels
    of a few µs per seed micro-batch, 20 ms of a step in session 8's profile (docs/BENCHMARKS.md). The same
    sums, in the same order, as ``_foreach_add_`` after the backward, one per pair of dtypes. ``owners[i]``
    (default: ``params[i]``) is the tensor whose ``.grad`` receives ``params[i]``'s gradient: a float32
    parameter for its bf16 stand-in (:mod:`cavegpt.train.bf16_weights`). A parameter whose backward writes its
    own ``.grad`` (the embedding tables under ``GPT.look_up(into_grad=True)``) comes back unused and is left alone.
    With ``compiled_adds`` the sums of gradients into a ``.grad`` of another dtype run compiled.
    """
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    arrived = [(p, g) for p, g in zip(params if owners is None else owners, grads) if g is not None]
    adds: dict[tuple[torch.dtype, torch.dtype], list[tuple[Tensor, Tensor]]] = {}
    for p, g in arrived:
        if p.grad is None:
            p.grad = g.to(p.dtype)
        else:
            adds.setdefault((p.grad.dtype, g.dtype), []).append((p.grad, g))
    for (total_dtype, grad_dtype), pairs in adds.items():  # by dtypes: the multi-tensor kernel takes one dtype
        totals, new = [total for total, _ in pairs], [g for _, g in pairs]
        if compiled_adds and grad_dtype != total_dtype:
            # bf16 gradients of stand-ins into float32 .grad: PyTorch's own foreach add runs one unvectorized
            # kernel per tensor there, ≈ 80 per seed micro-batch (9.2 ms a step on an H100, session 16); inductor
            # fuses the conversion into a few multi-tensor kernels
            _compiled_add_converted()(totals, new)
        else:
            torch._foreach_add_(totals, new)


def _add_converted(totals: list[Tensor], grads: list[Tensor]) -> None:
    """``totals[i] += grads[i]`` where the two differ in dtype (each sum rounded once, as the per-tensor add's)."""
    torch._foreach_add_(totals, grads)


@functools.cache
def _compiled_add_converted() -> Callable[[list[Tensor], list[Tensor]], None]:
    # made at first use: torch.compile at import would load dynamo into every process, +1.3 s per CLI start
    return torch.compile(_add_converted, dynamic=False, fullgraph=True)


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
    # inductor times a few block sizes for each of its fused elementwise and norm kernels. Off: +0.5 to +0.9 %
    # `seed` tokens/s on an H100 before the Q/K prep op, +0.1 % with it, once −7 % unexplained, and +31 s to a
    # compile whose kernels are not cached yet (docs/BENCHMARKS.md, sessions 17 and 18)
    autotune_elementwise: bool = False
    bf16: bool = True  # bf16 autocast (CUDA only)
    log_dir: str = "logs"
    run_id: str = ""  # empty: a timestamped id
    log_every: int = 1  # train-loss lines every N steps
    save_checkpoint: bool = True  # the final checkpoint
    checkpoint_every: int = 0  # also save every N steps (0: off)
    checkpoint_minutes: float = 0.0  # also save every M minutes of wall-clock (0: off)
    keep_checkpoints: int = 2  # periodic checkpoints kept (the final one always stays)
    check_finite: bool = True  # stop on a NaN/inf loss or gradient (one host sync per step)
    resume: str = ""  # a run folder or checkpoint to continue from
    logger: str = "none"  # also send metrics to "tensorboard" or "wandb" (when installed)
    collective_timeout_minutes: float = 20.0  # torchrun: a rank whose peers stay away this long stops (compile included)
    # the record preset's (cavegpt.optim.schedules); empty reproduces the seed
    batch_ramp: tuple[int, ...] = ()  # micro-batches per step in each equal stage (instead of grad_accum)
    mtp_weights: tuple[float, ...] = ()  # loss weights of the tokens 2, 3, … ahead at the start; they fade out

    def validate(self) -> None:
        if self.num_iterations < 1 or self.grad_accum < 1:
            raise ValueError("num_iterations and grad_accum must be >= 1")
        if self.val_every < 0 or self.log_every < 1:
            raise ValueError("val_every must be >= 0 and log_every >= 1")
        if self.device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device={self.device!r}: choose auto, cuda or cpu")
        if self.window_start < 1:
            raise ValueError(f"window_start={self.window_start} must be >= 1")
        if self.checkpoint_every < 0 or self.checkpoint_minutes < 0 or self.keep_checkpoints < 1:
            raise ValueError("checkpoint_every and checkpoint_minutes must be >= 0, keep_checkpoints >= 1")
        if self.collective_timeout_minutes <= 0:
            raise ValueError(f"collective_timeout_minutes={self.collective_timeout_minutes} must be > 0")
        if self.logger not in LOGGERS:
            raise ValueError(f"logger={self.logger!r}: choose one of {', '.join(LOGGERS)}")
        if any(n < 1 for n in self.batch_ramp) or any(w < 0 for w in self.mtp_weights):
            raise ValueError(f"batch_ramp={self.batch_ramp} must be >= 1 and mtp_weights={self.mtp_weights} >= 0")


@dataclass
class Progress:
    """Where a run stands; saved in checkpoints."""

    step: int = 0  # optimizer steps done
    train_time_ms: float = 0.0
    val_time_ms: float = 0.0  # wall-clock spent validating
    val_loss: float = float("nan")  # the latest
    validated_at: int = -1  # step of the latest validation
    target_step: int | None = None
    target_time_ms: float | None = None


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
    stopped: str | None = None  # the signal that stopped the run early, if any


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

    def __init__(self, config, echo: bool = True, resume_from: tuple[Path, dict] | None = None):
        """``resume_from``: (checkpoint path, its loaded state), checked against ``config`` by the caller."""
        self.config = config
        self.device = resolve_device(config.train.device)
        self.world = join_world(self.device.type, config.train.collective_timeout_minutes)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        for accum in {config.train.grad_accum, *config.train.batch_ramp}:
            local_micro_batches(accum, self.world)  # each stage's micro-batches must split over the ranks
        self.echo = echo and self.world.is_main
        self.resume_from = resume_from
        self.run_dir = Path(config.train.log_dir) / (config.train.run_id or new_run_id())
        model_cfg, data_cfg, train_cfg = self.config.model, self.config.data, self.config.train
        self.on_cuda = self.device.type == "cuda"
        self.bf16_autocast = self.on_cuda and train_cfg.bf16

        torch.manual_seed(train_cfg.seed)
        self.model = GPT(model_cfg).to(self.device)
        broadcast_parameters(self.model, self.world)
        self.param_groups = self.model.param_groups()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        # under bf16 autocast the block weights are cast once per step, not once per micro-batch
        self.bf16_weights = Bf16Weights(self.model, skip=(self.model.lm_head,)) if self.bf16_autocast else None
        self.sharded = ShardedStep(self.param_groups, Optimizers.MATRIX_GROUPS, self.world)
        self.optimizers = Optimizers(self.sharded.local, self.config.optim, train_cfg.num_iterations)
        self.compiled = train_cfg.compile and self.on_cuda  # the model, and the stand-ins' sums into .grad
        self.forward = self.model
        if self.compiled:
            options = {"max_autotune_pointwise": True} if train_cfg.autotune_elementwise else None
            self.forward = torch.compile(self.model, dynamic=False, options=options)
        try:
            self.attention = resolve_attention(model_cfg.attention, self.device)
        except ValueError as e:
            raise DeviceError(str(e)) from None
        self.quack_gemms = model_cfg.quack_gemms and quack_runs_on(self.device)
        fa4 = self.attention == "fa4"  # the loader then computes each batch's document bounds on the host
        self.train_stream = TokenStream(find_shards(data_cfg.train_glob, "train"), data_cfg.seq_len,
                                        data_cfg.batch_size, self.device, documents=fa4)
        self.val_stream = validation_stream(data_cfg, self.device, documents=fa4)
        # FA4 reads the window on the host at each launch; FlexAttention's mask reads it on the device
        self.window = torch.tensor(train_cfg.window_start, dtype=torch.int32, device="cpu" if fa4 else self.device)
        self.tokens_before = tokens_before(train_cfg.num_iterations, train_cfg.grad_accum, train_cfg.batch_ramp,
                                          data_cfg.micro_batch_tokens)
        self.multi_token = bool(train_cfg.mtp_weights)
        # every step's weights, on the device up front: indexing them costs no host-to-device copy
        self.loss_weights = torch.tensor([mtp_weights(s, train_cfg.num_iterations, train_cfg.mtp_weights)
                                          for s in range(train_cfg.num_iterations)], device=self.device)
        self.window_tokens = -1
        self._flop_terms: dict[int, FlopTerms] = {}

    @property
    def kernels(self) -> str:
        """Which attention and GEMM kernels run, for the run log and the bench's header."""
        return f"attention {self.attention}" + (" | quack GEMMs" if self.quack_gemms else "")

    def micro_batches_at(self, step: int) -> int:
        train = self.config.train
        return micro_batches(step, train.num_iterations, train.grad_accum, train.batch_ramp)

    def step_tokens(self, step: int) -> int:
        return self.micro_batches_at(step) * self.config.data.micro_batch_tokens

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.bf16_autocast:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def training_weights(self) -> contextlib.AbstractContextManager[list[Tensor]]:
        """Where micro-batches train, giving the tensors to differentiate: under bf16 autocast the block weights'
        bf16 copies stand in for them."""
        if self.bf16_weights:
            return self.bf16_weights.standing_in(self.trainable)
        return contextlib.nullcontext(self.trainable)

    def set_window(self, tokens: int) -> None:
        if tokens != self.window_tokens:  # fill_ is a device write, no host sync
            self.window.fill_(tokens)
            self.window_tokens = tokens

    def flop_terms(self, window: int) -> FlopTerms:
        """FLOPs per token at ``window``, with the attention term counted on the first train micro-batch."""
        if window not in self._flop_terms:
            sample = self.train_stream.tokens[: self.config.data.micro_batch_tokens]
            sample = sample.reshape(self.config.data.batch_size, -1)
            shape = self.config.model
            windows = [shape.layer_window(layer, window) for layer in range(shape.n_layer)]  # 0: no attention
            keys = {w: mean_attended_keys(sample, w) if w else 0.0 for w in set(windows)}
            self._flop_terms[window] = FlopTerms(self.model.matmul_params(), shape.n_layer, shape.d_model,
                                                 sum(keys[w] for w in windows) / shape.n_layer)  # the layers' mean
        return self._flop_terms[window]

    def window_at(self, step: int) -> int:
        train = self.config.train
        return attention_window(step, train.num_iterations, train.window_start, self.config.model.window)

    def train_forward(self, inputs: Tensor, targets: Tensor, documents: Documents | None,
                      step: int) -> tuple[Tensor, Tensor]:
        """(the objective to differentiate, the next-token loss) of one micro-batch at ``step``.

        On a GPU the embedding rows are looked up before the compiled forward, so that the backward pass adds
        their gradients straight into the tables' ``.grad`` (``GPT.look_up``): +0.6 % `seed` tokens/s on an H100
        (docs/BENCHMARKS.md, session 14). That sums each row in another order than a micro-batch's dense
        gradient added to the others', which on a GPU is summed by atomics in no fixed order either. On the CPU
        the dense gradients stay: they keep one process and two bit for bit alike (tests/test_distributed.py).
        """
        rows = self.model.look_up(inputs, into_grad=self.on_cuda)
        with self.autocast():
            if self.multi_token:
                objective, losses = self.forward(inputs, self.window, targets, loss_weights=self.loss_weights[step],
                                                 documents=documents, rows=rows)
                return objective, losses[0]
            loss = self.forward(inputs, self.window, targets, documents=documents, rows=rows)
            return loss, loss

    def accumulate(self, batches: Iterable[Batch], step: int, share: int = 1) -> Tensor:
        """Forward and backward passes over ``batches`` as micro-batches of ``step``, each objective divided by
        ``share``, their gradients summed into ``.grad``; returns the sum of their next-token losses (on device)."""
        total = torch.zeros((), device=self.device)
        with self.training_weights() as differentiated, weight_copies_held():
            for inputs, targets, documents in batches:
                objective, loss = self.train_forward(inputs, targets, documents, step)
                accumulate_gradients(objective / share, differentiated, self.trainable, self.compiled)
                total += loss.detach()
        return total

    def train_step(self, step: int, guard: bool = False) -> Tensor:
        """One optimizer step over the step's micro-batches; returns their mean next-token loss (on device).

        Under torchrun this rank runs micro-batches rank, rank + N, …; gradients are averaged once at the
        end, and this rank steps its share of the optimizer's work (cavegpt.train.sharding). With
        multi-token prediction the gradient is that of the weighted sum of the losses of the tokens 1 … K
        ahead. With ``guard``, a non-finite loss or gradient raises before the weights change.
        """
        accum = self.micro_batches_at(step)
        total = self.accumulate(rank_batches(self.train_stream, accum, self.world), step,
                                local_micro_batches(accum, self.world))
        # the small sum (loss, health) goes first: NCCL runs collectives in order, and the host waits on it
        names, summary = gradient_health(total, self.param_groups) if guard else ([], total.reshape(1))
        summary = sum_over_ranks(summary, self.world)
        collectives = self.sharded.start(STEP_ORDER)
        if guard:
            loss_sum, *bad = summary.tolist()
            try:
                check_finite(step, loss_sum / accum, names, bad)
            except NonFiniteError:
                collectives.finish_all()  # leave no collective half done
                raise
        self.optimizers.step(step, STEP_ORDER, ready=collectives.finish, done=collectives.gather)
        collectives.wait()
        return summary[0] / accum

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over the first ``val_tokens`` of the val shards (split over the ranks)."""
        self.val_stream.seek(0, 0)
        steps = self.config.data.val_tokens // self.config.data.micro_batch_tokens
        total = torch.zeros((), device=self.device)
        with weight_copies_held():
            for inputs, targets, documents in rank_batches(self.val_stream, steps, self.world):
                with self.autocast():
                    total += self.forward(inputs, self.window, targets, documents=documents)
        return (sum_over_ranks(total, self.world) / steps).item()

    def warmup(self) -> float:
        """Compile (or just touch) the training and validation graphs; leaves weights untouched."""
        start = time.perf_counter()
        position = self.train_stream.position
        batch = self.train_stream.next_batch()
        inputs, targets, documents = batch
        # the training graph; with the stand-ins, a second micro-batch compiles their sums into .grad
        self.accumulate([batch] * (2 if self.bf16_weights and self.compiled else 1), 0)
        self.model.zero_grad(set_to_none=True)
        with torch.no_grad(), self.autocast():
            self.forward(inputs, self.window, targets, documents=documents)
        self.train_stream.seek(*position)
        self.synchronize()
        seconds = time.perf_counter() - start
        self._release_compile_workers()  # every graph is built; their processes would only hold memory and the exit
        return seconds

    def _release_compile_workers(self) -> None:
        if not release_compile_workers():
            warnings.warn(f"torch.compile's worker processes did not stop within {RELEASE_TIMEOUT_S:.0f} s; "
                          "they were killed", stacklevel=2)

    def close(self) -> None:
        """Leave the process group (under torchrun) and stop any compile workers; the trainer is done."""
        leave_world(self.world)
        self._release_compile_workers()

    def synchronize(self) -> None:
        if self.on_cuda:
            torch.cuda.synchronize()

    def state(self, progress: Progress) -> dict:
        """Everything needed to continue exactly from here; under torchrun every rank calls it together, and
        only rank 0's copy holds the optimizers' state (None on the others, which write no checkpoint)."""
        rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.on_cuda:
            rng["cuda"] = torch.cuda.get_rng_state_all()
        optimizers = self.sharded.full_state(self.optimizers.state_dict())
        return {"model": self.model.state_dict(), "optimizers": optimizers, "config": asdict(self.config),
                "progress": asdict(progress),
                "train_position": list(self.train_stream.position), "rng": rng}

    def restore(self, state: dict) -> Progress:
        self.model.load_state_dict(state["model"])
        self.optimizers.load_state_dict(self.sharded.local_state(state["optimizers"]))
        self.train_stream.seek(*state["train_position"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        if self.on_cuda and "cuda" in state["rng"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return Progress(**state["progress"])

    def run(self) -> RunResult:
        train = self.config.train
        progress = Progress()
        if self.resume_from is not None:
            progress = self.restore(self.resume_from[1])
        display = LiveDisplay(train.num_iterations, progress.step, progress.train_time_ms, train.val_every,
                              train.target_val_loss) if self.echo else None
        main = self.world.is_main  # the other ranks train and validate but write nothing
        log = RunLog(self.run_dir, show=display.write if display else None, enabled=main,
                     sink=open_sink(train.logger, self.run_dir, asdict(self.config)) if main else None)
        try:
            return self._run(progress, log, display)
        finally:
            log.close()
            if display is not None:
                display.close()

    def _run(self, progress: Progress, log: RunLog, display: LiveDisplay | None) -> RunResult:
        train = self.config.train
        total = train.num_iterations
        if self.resume_from is None:
            log.write_config(asdict(self.config))
            log.line(f"run {self.run_dir} | device {self.device} | torch {torch.__version__} | "
                     f"{sum(p.numel() for p in self.model.parameters()):,} parameters | "
                     f"{self.step_tokens(0):,} tokens/step" + (
                         f" at first, {self.tokens_before[-1]:,} in all" if self.config.train.batch_ramp else "")
                     + f" | {self.kernels}")
        else:
            log.drop_metrics_after(progress.step)
            log.line(f"resumed from {self.resume_from[0].name} at step {progress.step}")
        compile_seconds = self.warmup()
        log.line(f"warm-up (compile) {compile_seconds:.1f}s")
        peak_tflops = measure_matmul_peak_tflops() if self.on_cuda and self.world.is_main else None
        if self.world.is_main:
            log.write_environment({**environment(self.device), "matmul_peak_tflops": peak_tflops,
                                   "processes": self.world.size, "attention": self.attention})

        start = progress.step
        last_saved = self.resume_from[0] if self.resume_from else None
        self.synchronize()
        t0 = saved_at = time.perf_counter()
        rate_from = (start, progress.train_time_ms)  # tokens/s is measured since the previous log line
        with StopSignals() as signals:
            for step in range(start, total + 1):
                progress.step = step
                last = step == total
                self.set_window(self.window_at(step))
                validate = (last or (train.val_every and step % train.val_every == 0)) and step != progress.validated_at
                minutes_due = bool(train.checkpoint_minutes) and time.perf_counter() - saved_at >= 60 * train.checkpoint_minutes
                stop, minutes_due = any_rank([signals.requested is not None, minutes_due], self.device, self.world)
                stopped_by = signals.requested or ("a signal to another rank" if stop else None)
                save = step > start and not last and (
                    stop or minutes_due or (train.checkpoint_every and step % train.checkpoint_every == 0))
                if validate or save:  # the clock stops: train_time counts training steps only
                    self.synchronize()
                    progress.train_time_ms += 1000 * (time.perf_counter() - t0)
                    if validate:
                        last = self.validate(progress, log, display) or last
                    if save and not last:
                        last_saved = self.save(checkpoint_name(step), progress)
                        saved_at = time.perf_counter()
                        log.line(f"saved {last_saved.name}")
                    self.synchronize()
                    t0 = time.perf_counter()
                if stopped_by and not last:
                    log.line(f"stopped by {stopped_by} at step {step}; continue with: cavegpt resume {self.run_dir}")
                    return self.result(progress, compile_seconds, last_saved, stopped=stopped_by)
                if last:
                    break
                try:
                    loss = self.train_step(step, guard=train.check_finite)
                except NonFiniteError as e:
                    log.line(f"{e}. Stopped without updating the weights; the last good checkpoint is "
                             f"{last_saved or 'none (set checkpoint_every=N to keep some)'}")
                    raise NonFiniteError(f"{e}; last good checkpoint: {last_saved or 'none'}") from None
                if (step + 1) % train.log_every == 0 or step + 1 == total:
                    elapsed = progress.train_time_ms + 1000 * (time.perf_counter() - t0)
                    record = self.train_record(step + 1, loss.item(), elapsed, rate_from, peak_tflops)
                    rate_from = (step + 1, elapsed)
                    log.line(step_line(step + 1, total, elapsed, step + 1, train_loss=record["train_loss"]), show=False)
                    log.metric(**record)
                    if display is not None:
                        display.update(record)

        checkpoint = None
        if train.save_checkpoint:
            checkpoint = self.save(checkpoint_name(progress.step, progress.val_loss), progress)
            log.line(f"saved {checkpoint}")
        return self.result(progress, compile_seconds, checkpoint)

    def save(self, name: str, progress: Progress) -> Path:
        """Every rank sends its share of the optimizer state, rank 0 writes the checkpoint; every rank learns its
        path."""
        path = self.run_dir / name
        state = self.state(progress)
        if self.world.is_main:
            save_checkpoint(path, state)
            prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints)
        return path

    def train_record(self, step: int, loss: float, train_time_ms: float, since: tuple[int, float],
                     peak_tflops: float | None) -> dict:
        """One train record of metrics.jsonl; tokens/s and MFU over the steps since ``since`` (step, time)."""
        seconds = (train_time_ms - since[1]) / 1000
        rate = (self.tokens_before[step] - self.tokens_before[since[0]]) / seconds if seconds > 0 else float("nan")
        lrs = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.by_name.items()}
        record = {"kind": "train", "step": step, "tokens": self.tokens_before[step], "train_loss": loss,
                  "lr_multiplier": self.optimizers.multiplier, "lr": lrs, "window": self.window_tokens,
                  "train_time_ms": train_time_ms, "tokens_per_second": rate,
                  "mfu": self.flop_terms(self.window_tokens).per_token * rate / (peak_tflops * 1e12 * self.world.size)
                  if peak_tflops else None}
        if self.on_cuda:
            record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return record

    def validate(self, progress: Progress, log: RunLog, display: LiveDisplay | None = None) -> bool:
        """Validate at ``progress.step``; True when the target loss is reached."""
        train = self.config.train
        started = time.perf_counter()
        progress.val_loss = self.evaluate()
        seconds = time.perf_counter() - started
        progress.val_time_ms += 1000 * seconds
        progress.validated_at = progress.step
        log.line(step_line(progress.step, train.num_iterations, progress.train_time_ms, progress.step,
                           val_loss=progress.val_loss))
        log.metric(kind="val", step=progress.step, tokens=self.tokens_before[progress.step],
                   val_loss=progress.val_loss, train_time_ms=progress.train_time_ms,
                   val_time_ms=progress.val_time_ms, wall_time_ms=progress.train_time_ms + progress.val_time_ms)
        if display is not None:
            display.validated(progress.step, progress.val_loss, seconds)
        if train.target_val_loss is None or progress.val_loss > train.target_val_loss or progress.target_step is not None:
            return False
        progress.target_step, progress.target_time_ms = progress.step, progress.train_time_ms
        if display is not None:
            display.target_reached(progress.step, progress.train_time_ms)
        log.line(f"target val_loss<={train.target_val_loss} reached at step {progress.step}, "
                 f"train_time:{progress.train_time_ms:.0f}ms")
        return True

    def result(self, progress: Progress, compile_seconds: float, checkpoint: Path | None,
               stopped: str | None = None) -> RunResult:
        return RunResult(self.run_dir, progress.step, progress.val_loss, progress.train_time_ms, compile_seconds,
                         progress.target_step, progress.target_time_ms, checkpoint, stopped)
