"""Under torchrun, each rank runs its share of the optimizer step instead of all of it (ZeRO stage 1).

With the gradients all-reduced, every rank would run the same optimizer step on the whole model:
Newton–Schulz on every matrix and Adam on every embedding row, N times over. At `record`'s first
stage (a rank's step is two micro-batches) that repeated work is most of what keeps two GPUs from
being twice as fast. So the step is split:

* Adam's large tensors (the embedding tables, the LM head) are cut into N equal flat pieces. The
  gradient is reduce-scattered, so rank r receives only the sum of piece r; rank r runs Adam on piece r
  with piece r's moments, straight into the weight's storage; an all-gather then hands every rank
  the other pieces.
* Muon's matrices stay whole (Newton–Schulz needs the whole matrix). In each stack of same-shape
  matrices, rank r owns a contiguous block: the stack's gradients are reduce-scattered, the owner
  runs Muon on its block, and the updated block is all-gathered.
* The small tensors (the scalars) are summed by one all-reduce and stepped on every rank, as before.

The same bytes cross the wire as with one all-reduce (which NCCL runs as a reduce-scatter plus an
all-gather), each element's update is the arithmetic one process would do, and each rank holds 1/N
of the optimizer's moments. Checkpoints keep one process's layout: :meth:`ShardedStep.full_state`
gathers the moments to rank 0 on save, :meth:`ShardedStep.local_state` cuts them on load, so a run resumes
under any process count. Without torchrun every parameter is stepped whole and nothing travels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from cavegpt.train.distributed import MAIN_RANK, World, WorldError, together

# smaller Adam tensors are summed whole: one flat all-reduce of them costs less than a collective each
MIN_PIECE_NUMEL = 1 << 16
# PyTorch 2.13 renamed these (the old names warn); 2.11 on the GPU machines has only the old ones
_reduce_scatter = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
_all_gather = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
CHECKPOINT_STATE = "the optimizer state for a checkpoint"  # what a timed-out peer was joining

WHOLE, PIECES, OWNED = "whole", "pieces", "owned"


@dataclass
class Stack:
    """Muon's matrices of one shape in one group; rank r owns positions [r * per_rank, (r + 1) * per_rank)."""

    params: list[nn.Parameter]
    per_rank: int
    rank: int

    @property
    def owned(self) -> list[nn.Parameter]:
        return self.params[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]


@dataclass(frozen=True)
class Placement:
    """Where one parameter of a group is stepped."""

    how: str  # WHOLE, PIECES or OWNED
    local_index: int | None  # its (or its piece's) place in this rank's optimizer; None: another rank steps it
    owner: int = -1  # OWNED: the rank that steps it


@dataclass
class GroupPlan:
    """How one parameter group is split: a placement per parameter, and what this rank's optimizer steps."""

    params: list[nn.Parameter]
    placements: list[Placement] = field(default_factory=list)
    local: list[nn.Parameter] = field(default_factory=list)
    whole: list[nn.Parameter] = field(default_factory=list)
    pieces: list[tuple[nn.Parameter, nn.Parameter]] = field(default_factory=list)  # (weight, this rank's piece)
    stacks: list[Stack] = field(default_factory=list)


def plan_group(params: Sequence[nn.Parameter], whole_matrices: bool, world: World) -> GroupPlan:
    """``whole_matrices``: deal the tensors out whole (Muon's); else cut the large ones into pieces (Adam's)."""
    plan = GroupPlan(list(params))
    size, rank = world.size, world.rank
    owners: dict[int, int] = {}  # id(parameter) -> owning rank
    if whole_matrices and size > 1:
        by_shape: dict[torch.Size, list[nn.Parameter]] = {}
        for p in params:
            by_shape.setdefault(p.shape, []).append(p)
        for same_shape in by_shape.values():
            stack = Stack(same_shape, math.ceil(len(same_shape) / size), rank)
            plan.stacks.append(stack)
            owners.update({id(p): position // stack.per_rank for position, p in enumerate(same_shape)})
    for p in params:
        here = len(plan.local)
        if id(p) in owners:
            owner = owners[id(p)]
            plan.placements.append(Placement(OWNED, here if owner == rank else None, owner))
            if owner == rank:
                plan.local.append(p)
        elif size > 1 and p.numel() % size == 0 and p.numel() >= MIN_PIECE_NUMEL and p.is_contiguous():
            length = p.numel() // size
            piece = nn.Parameter(p.detach().view(-1).narrow(0, rank * length, length))  # shares p's storage
            plan.placements.append(Placement(PIECES, here))
            plan.pieces.append((p, piece))
            plan.local.append(piece)
        else:
            plan.placements.append(Placement(WHOLE, here))
            plan.whole.append(p)
            plan.local.append(p)
    return plan


class ShardedStep:
    """Which share of each parameter group this rank's optimizers step, and the collectives around a step.

    ``groups``: the model's parameter groups; ``matrix_groups``: the names of those whose tensors must be
    stepped whole (Muon's). Build the optimizers over :attr:`local`.
    """

    def __init__(self, groups: dict[str, list[nn.Parameter]], matrix_groups: Collection[str], world: World):
        self.world = world
        self.plans = {name: plan_group(params, name in matrix_groups, world) for name, params in groups.items()}
        for name, plan in self.plans.items():
            if plan.params and not plan.local:
                raise WorldError(f"parameter group {name!r} ({len(plan.params)} tensors) leaves rank {world.rank} "
                                 f"of {world.size} nothing to step; run with fewer processes")

    @property
    def local(self) -> dict[str, list[nn.Parameter]]:
        return {name: plan.local for name, plan in self.plans.items()}

    def start(self, order: Sequence[str]) -> StepCollectives:
        """Start every group's gradient sums, in ``order``, without waiting for any."""
        return StepCollectives(self, order)

    def full_state(self, local_state: dict[str, dict]) -> dict[str, dict] | None:
        """The optimizers' state as one process holds it, on rank 0, which writes checkpoints; None on the
        other ranks. Every rank must call this (it is collective); tensors reach rank 0's CPU one at a time,
        so a GPU holds one extra tensor at most, and no other rank makes host copies."""
        if not self.world.distributed:
            return local_state
        state = {name: self._full_group_state(self.plans[name], local_state[name]) for name in local_state}
        return state if self.world.is_main else None

    def local_state(self, full_state: dict[str, dict]) -> dict[str, dict]:
        """This rank's share of an optimizer state saved in one process's layout."""
        if not self.world.distributed:
            return full_state
        shares = {}
        for name, plan in self.plans.items():
            saved, state = full_state[name], {}
            for index, placed in enumerate(plan.placements):
                entry = saved["state"].get(index)
                if entry is None or placed.local_index is None:
                    continue
                if placed.how == PIECES:
                    length = plan.local[placed.local_index].numel()
                    entry = {key: value.reshape(-1).narrow(0, self.world.rank * length, length).clone()
                             if isinstance(value, Tensor) and value.ndim > 0 else value for key, value in entry.items()}
                state[placed.local_index] = entry
            shares[name] = {"state": state, "param_groups": _one_group(saved, len(plan.local))}
        return shares

    def _full_group_state(self, plan: GroupPlan, saved: dict) -> dict:
        state = {}
        for index, placed in enumerate(plan.placements):
            entry = None if placed.local_index is None else saved["state"].get(placed.local_index)
            if placed.how == OWNED:
                entry = self._from_owner(entry, placed.owner, plan.params[index].device)
            elif placed.how == PIECES and entry is not None:
                shape = plan.params[index].shape
                entry = {key: self._gathered(value, shape) if isinstance(value, Tensor) and value.ndim > 0
                         else value for key, value in entry.items()}
            if entry is not None:
                state[index] = entry
        return {"state": state, "param_groups": _one_group(saved, len(plan.params))}

    def _gathered(self, piece: Tensor, shape: torch.Size) -> Tensor | None:
        """Every rank's ``piece`` joined into ``shape`` on rank 0's CPU (None elsewhere)."""
        whole = piece.new_empty(self.world.size, piece.numel()) if self.world.is_main else None
        parts = list(whole.unbind()) if whole is not None else None  # views: the pieces land in place, no join
        together(self.world, CHECKPOINT_STATE, lambda: dist.gather(piece.reshape(-1), parts, dst=MAIN_RANK))
        return whole.view(shape).cpu() if whole is not None else None

    def _from_owner(self, entry: dict | None, owner: int, device: torch.device) -> dict | None:
        """``entry`` (tensors and plain values) as rank ``owner`` holds it, on rank 0's CPU (None elsewhere):
        sent point to point, its layout first, then each tensor; the other ranks take no part."""
        rank = self.world.rank
        if owner == MAIN_RANK:
            return None if rank != MAIN_RANK or entry is None else {
                key: value.cpu() if isinstance(value, Tensor) else value for key, value in entry.items()}
        if rank not in (owner, MAIN_RANK):
            return None
        layout = [None if entry is None else {
            key: ("tensor", value.shape, value.dtype) if isinstance(value, Tensor) else ("value", value)
            for key, value in entry.items()}]
        if rank == owner:
            together(self.world, CHECKPOINT_STATE, lambda: dist.send_object_list(layout, MAIN_RANK, device=device))
            for value in (entry or {}).values():
                if isinstance(value, Tensor):
                    together(self.world, CHECKPOINT_STATE, lambda: dist.send(value.to(device).contiguous(), MAIN_RANK))
            return None
        together(self.world, CHECKPOINT_STATE, lambda: dist.recv_object_list(layout, owner, device=device))
        if layout[0] is None:
            return None
        received = {}
        for key, (kind, *details) in layout[0].items():
            if kind == "value":
                received[key] = details[0]
                continue
            tensor = torch.empty(details[0], dtype=details[1], device=device)
            together(self.world, CHECKPOINT_STATE, lambda: dist.recv(tensor, owner))
            received[key] = tensor.cpu()
        return received


def _one_group(saved: dict, count: int) -> list[dict]:
    """A torch optimizer's one param group, renumbered for ``count`` tensors."""
    (group,) = saved["param_groups"]
    return [{**group, "params": list(range(count))}]


class StepCollectives:
    """One step's collectives: every group's gradient sums start at once; :meth:`finish` completes one group's
    just before it steps, :meth:`gather` starts its weights' all-gathers right after, :meth:`wait` completes
    those before the weights are read again. With NCCL each wait holds the GPU stream, not the host, so a
    group's optimizer work overlaps the other groups' traffic."""

    def __init__(self, sharded: ShardedStep, order: Sequence[str]):
        self.world = sharded.world
        self.plans = sharded.plans
        self.summing: dict[str, list[tuple[dist.Work, Callable[[], None]]]] = {}
        self.gathering: list[tuple[dist.Work, Callable[[], None] | None]] = []
        if self.world.distributed:
            for name in order:
                self.summing[name] = self._start_sums(self.plans[name])

    def _run(self, collective: Callable[[], dist.Work], what: str = "the gradient average") -> dist.Work:
        return together(self.world, what, collective)

    def _start_sums(self, plan: GroupPlan) -> list[tuple[dist.Work, Callable[[], None]]]:
        size, started = self.world.size, []
        grads = [p.grad for p in plan.whole if p.grad is not None]
        if grads:
            flat = torch.cat([g.reshape(-1) for g in grads])

            def unpack(flat=flat, grads=grads) -> None:
                parts = flat.div_(size).split([g.numel() for g in grads])
                torch._foreach_copy_(grads, [part.view_as(g) for part, g in zip(parts, grads)])
            started.append((self._run(lambda: dist.all_reduce(flat, async_op=True)), unpack))
        for weight, piece in plan.pieces:
            if weight.grad is None:
                piece.grad = None
                continue
            mine = torch.empty_like(piece)

            def take_piece(weight=weight, piece=piece, mine=mine) -> None:
                piece.grad = mine.div_(size)
                weight.grad = None
            grad = weight.grad.reshape(-1)
            started.append((self._run(lambda: _reduce_scatter(mine, grad, async_op=True)), take_piece))
        for stack in plan.stacks:
            had_grad = [p.grad is not None for p in stack.params]
            padded = [p.grad if p.grad is not None else torch.zeros_like(p) for p in stack.params]
            padded += [torch.zeros_like(stack.params[0])] * (stack.per_rank * size - len(padded))
            everything, mine = torch.stack(padded), stack.params[0].new_empty(stack.per_rank, *stack.params[0].shape)

            def take_block(stack=stack, mine=mine, had_grad=had_grad) -> None:
                mine.div_(size)
                for position, p in enumerate(stack.params):
                    owned = position // stack.per_rank == stack.rank
                    p.grad = mine[position % stack.per_rank] if owned and had_grad[position] else None
            started.append((self._run(lambda: _reduce_scatter(mine, everything, async_op=True)), take_block))
        return started

    def finish(self, name: str) -> None:
        """Write group ``name``'s gradient means where its optimizer reads them (no-op if done or never started)."""
        for work, then in self.summing.pop(name, []):
            together(self.world, "the gradient average", work.wait)
            then()

    def finish_all(self) -> None:
        for name in list(self.summing):
            self.finish(name)

    def gather(self, name: str) -> None:
        """Start handing group ``name``'s updated shares to every rank (call once it has stepped)."""
        if not self.world.distributed:
            return
        plan, size = self.plans[name], self.world.size
        for weight, piece in plan.pieces:  # in place: this rank's piece already sits in the weight
            whole, mine = weight.detach().view(-1), piece.detach()
            work = self._run(lambda: _all_gather(whole, mine, async_op=True), "the weights' all-gather")
            self.gathering.append((work, None))
        for stack in plan.stacks:
            owned = [p.detach() for p in stack.owned]
            block = torch.stack(owned + [torch.zeros_like(stack.params[0])] * (stack.per_rank - len(owned)))
            everything = block.new_empty(stack.per_rank * size, *block.shape[1:])

            def unpack(stack=stack, everything=everything) -> None:
                others = [(p, everything[i]) for i, p in enumerate(stack.params) if i // stack.per_rank != stack.rank]
                torch._foreach_copy_([p.detach() for p, _ in others], [new for _, new in others])
            work = self._run(lambda: _all_gather(everything, block, async_op=True), "the weights' all-gather")
            self.gathering.append((work, unpack))

    def wait(self) -> None:
        """Every rank's weights whole again (the GPU stream waits for the all-gathers)."""
        for work, then in self.gathering:
            together(self.world, "the weights' all-gather", work.wait)
            if then is not None:
                then()
        self.gathering.clear()
