"""Several processes, one run: the ``torchrun`` environment, gradient averaging and agreed decisions.

Launched by ``torchrun --nproc_per_node=N -m cavegpt train ...`` (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT set), each rank takes every N-th micro-batch of each optimizer step, so the tokens
per step and the data order are those of one process. Gradients are averaged once per step, after
accumulation, and each rank steps its share of the optimizer's work (cavegpt.train.sharding), so every
rank ends each step with the same weights. NCCL on GPUs, gloo on CPUs. Without torchrun this is a
world of one and every call here is free.

A rank whose peers do not reach a collective within ``train.collective_timeout_minutes`` stops:
with gloo the collective raises here and becomes :class:`PeerTimeout`, one sentence; with NCCL,
PyTorch's watchdog ends the process after the same time and names the collective.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cavegpt.data.loader import Batch, TokenStream


class WorldError(ValueError):
    """A run that cannot be split over this many processes as configured."""


class PeerTimeout(RuntimeError):
    """The other processes of the run did not reach a collective in time."""


Result = TypeVar("Result")


MAIN_RANK = 0  # writes logs, checkpoints and reports


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout_minutes: float = 0.0  # how long a collective waits for the other ranks

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints and reports."""
        return self.rank == MAIN_RANK

    @property
    def distributed(self) -> bool:
        return self.size > 1


def join_world(device_type: str, timeout_minutes: float = 20.0) -> World:
    """Join the process group torchrun describes (no-op without torchrun); pins this rank's GPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")), timeout_minutes)
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                                timeout=timedelta(minutes=timeout_minutes))
    return world


def together(world: World, what: str, collective: Callable[[], Result]) -> Result:
    """Run ``collective``; peers that do not come within the timeout end this rank with one sentence."""
    try:
        return collective()
    except RuntimeError as e:
        if not (isinstance(e, dist.DistBackendError) or "timed out" in str(e).lower()):
            raise
        raise PeerTimeout(f"rank {world.rank} of {world.size} waited {world.timeout_minutes:g} min for the other "
                          f"processes to join {what} and gave up: one of them crashed, hung or was stopped "
                          "(the limit is train.collective_timeout_minutes)") from None


def leave_world(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def local_micro_batches(grad_accum: int, world: World) -> int:
    """Micro-batches each rank runs per step; the global count must split evenly."""
    if grad_accum % world.size:
        raise WorldError(f"grad_accum={grad_accum} micro-batches per step cannot be split over {world.size} "
                         f"processes; choose a process count that divides it (or change grad_accum and seq_len "
                         f"together to keep the tokens per step)")
    return grad_accum // world.size


def sum_over_ranks(value: Tensor, world: World) -> Tensor:
    if world.distributed:
        value = value.clone()
        together(world, "a sum over the ranks", lambda: dist.all_reduce(value))
    return value


def rank_batches(stream: TokenStream, count: int, world: World) -> Iterator[Batch]:
    """This rank's share of the next ``count`` batches of ``stream``: numbers rank, rank + N, …

    The others are skipped unread, so every rank's stream ends where one process's would.
    """
    for index in range(count):
        if index % world.size == world.rank:
            yield stream.next_batch()
        else:
            stream.skip_batch()


def any_rank(flags: list[bool], device: torch.device, world: World) -> list[bool]:
    """Element-wise OR over the ranks, so that all of them stop, save or validate together."""
    if not world.distributed:
        return flags
    tensor = torch.tensor([float(f) for f in flags], device=device)
    together(world, "the stop/save decision", lambda: dist.all_reduce(tensor, op=dist.ReduceOp.MAX))
    return [bool(v) for v in tensor.tolist()]


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Start every rank from rank 0's weights (same seed already gives them; this makes it certain)."""
    if world.distributed:
        for tensor in [*model.parameters(), *model.buffers()]:
            together(world, "the start (rank 0's weights)", lambda: dist.broadcast(tensor.data, src=0))
