"""The optimizer step split over ranks: which share each rank steps, and that the split changes no number."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from cavegpt.train.distributed import World, WorldError
from cavegpt.train.sharding import MIN_PIECE_NUMEL, OWNED, PIECES, WHOLE, ShardedStep, plan_group
from tests.test_distributed import four_step_trainer, free_port, rank_of_two

# the record preset's optimizer and model options on the tiny model: NorMuon's second moments, cautious
# weight decay, Polar Express, a bigram table (the largest Adam tensor), multi-token losses
RECORD_LIKE = ("ns_coefficients=polar_express", "normuon_beta2=0.95", "muon_weight_decay=1.2",
               f"bigram_vocab={5 * 50304}", "mtp_weights=0.5,0.25")


def parameters(*shapes: tuple[int, ...]) -> list[nn.Parameter]:
    return [nn.Parameter(torch.randn(shape)) for shape in shapes]


def test_one_process_steps_everything_whole() -> None:
    params = parameters((256, 512), (7,))
    plan = plan_group(params, whole_matrices=False, world=World())
    assert [placed.how for placed in plan.placements] == [WHOLE, WHOLE] and plan.local == params


def test_large_adam_tensors_are_cut_into_pieces_that_share_the_weights_storage() -> None:
    big, small, odd = parameters((256, 512), (10,), (MIN_PIECE_NUMEL + 1,))
    plan = plan_group([big, small, odd], whole_matrices=False, world=World(rank=1, size=2))
    assert [placed.how for placed in plan.placements] == [PIECES, WHOLE, WHOLE]  # too small to be worth a collective; not divisible by 2
    piece = plan.local[0]
    assert piece.is_leaf and torch.equal(piece, big.detach().view(-1)[big.numel() // 2:])
    with torch.no_grad():
        piece.add_(1.0)  # what Adam does to rank 1's piece lands in the second half of the weight
    assert torch.equal(big.detach().view(-1)[big.numel() // 2:], piece.detach())
    assert plan.local[1:] == [small, odd]


def test_matrices_are_dealt_out_whole_in_blocks_per_shape() -> None:
    params = parameters((4, 4), (4, 8), (4, 4), (4, 4), (4, 8), (4, 4), (4, 4))
    squares = [0, 2, 3, 5, 6]  # five of them: blocks of 3 and 2
    for rank in (0, 1):
        plan = plan_group(params, whole_matrices=True, world=World(rank=rank, size=2))
        owners = [placed.owner for placed in plan.placements]
        assert [placed.how for placed in plan.placements] == [OWNED] * 7
        assert [owners[i] for i in squares] == [0, 0, 0, 1, 1]
        assert [owners[i] for i in (1, 4)] == [0, 1]
        assert plan.local == [p for p, owner in zip(params, owners) if owner == rank]
        assert [placed.local_index is not None for placed in plan.placements] == [o == rank for o in owners]


def test_a_rank_left_with_no_matrix_is_refused() -> None:
    with pytest.raises(WorldError, match="parameter group 'matrices' .1 tensors. leaves rank 1 of 2 nothing to step"):
        ShardedStep({"matrices": parameters((4, 4))}, ["matrices"], World(rank=1, size=2))


def _train_four_steps(rank: int, port: int, folder: str) -> None:
    rank_of_two(rank, port)
    trainer = four_step_trainer(folder, "sharded", *RECORD_LIKE)
    try:
        trainer.run()
        local = trainer.optimizers.state_dict()
        full = trainer.sharded.full_state(local)  # collective: both ranks; only rank 0 receives the state
        saved = Path(folder) / "two.pt"
        if rank == 0:
            torch.save({"model": trainer.model.state_dict(), "optimizers": full}, saved)
        torch.distributed.barrier()
        back = trainer.sharded.local_state(torch.load(saved, weights_only=True)["optimizers"])  # as a resume does
        same = all(torch.equal(value, back[name]["state"][index][key].to(value.device))
                   for name, group in local.items() for index, entry in group["state"].items()
                   for key, value in entry.items() if isinstance(value, torch.Tensor))
        (Path(folder) / f"round_trip{rank}.txt").write_text(f"{same} {full is None}")
    finally:
        trainer.close()


def test_two_ranks_stepping_shares_end_where_one_process_does(tmp_path: Path, textmix: Path) -> None:
    """Weights and every optimizer moment after 4 steps, N=2 (gathered to one process's layout) against N=1."""
    mp.spawn(_train_four_steps, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    one = four_step_trainer(str(tmp_path), "one", *RECORD_LIKE)
    one.run()
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    worst = max((two["model"][name] - value).abs().max().item() for name, value in one.model.state_dict().items())
    reference = one.optimizers.state_dict()
    assert two["optimizers"].keys() == reference.keys()
    for name, group in reference.items():
        assert two["optimizers"][name]["param_groups"] == group["param_groups"]
        assert two["optimizers"][name]["state"].keys() == group["state"].keys(), name
        for index, entry in group["state"].items():
            for key, value in entry.items():
                other = two["optimizers"][name]["state"][index][key]
                assert other.shape == value.shape, (name, index, key)
                worst = max(worst, (other.float() - value.float()).abs().max().item())
    print(f"\nmax |Δ| over weights and optimizer state, N=2 vs N=1: {worst:.2e}")
    assert worst <= 1e-6
    # each rank's share back from the file, exactly; rank 1 was handed no copy of the state
    assert [(tmp_path / f"round_trip{rank}.txt").read_text() for rank in (0, 1)] == ["True False", "True True"]
