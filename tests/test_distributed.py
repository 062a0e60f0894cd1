"""torchrun with 2 CPU processes (gloo) against 1 process: same tokens per step, same losses, same weights."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cavegpt.config import build_config
from cavegpt.train.distributed import (PeerTimeout, World, WorldError, join_world, leave_world, local_micro_batches,
                                      sum_over_ranks)
from cavegpt.train.guards import NonFiniteError
from cavegpt.train.trainer import Trainer
from tests.conftest import TEXTMIX, cavegpt, textmix_overrides

SMALL = ["--preset", "tiny", "seq_len=128", "grad_accum=2", "num_iterations=12", "cooldown_iters=4",
         "muon_momentum_warmup=2", "val_every=6", "val_tokens=512"]
# measured 2026-11-24 (CPU, torch 2.13): train losses of N=2 equal N=1 bit for bit; val losses differ by ≤ 1e-6
# (the val sum is reduced in another order). The tolerance leaves room for other BLAS builds.
TOLERANCE = 1e-5


def torchrun(nproc: int, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "cavegpt", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def losses(run: Path) -> dict[tuple[str, int], float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {(r["kind"], r["step"]): r.get("train_loss", r.get("val_loss")) for r in records}


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max(abs(a[k] - b[k]) for k in a)
    print(f"\nmax |Δ loss| between process counts: {worst:.2e}")
    assert worst <= TOLERANCE


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    if not (TEXTMIX / "textmix_val_000000.bin").exists():
        pytest.skip(f"textmix shards not found at {TEXTMIX}")
    logs = tmp_path_factory.mktemp("n1")
    result = cavegpt("train", *SMALL, *textmix_overrides(TEXTMIX), f"log_dir={logs}", "run_id=n1",
                     "checkpoint_every=6")
    assert result.returncode == 0, result.stderr
    return logs / "n1"


def test_two_processes_learn_what_one_does_and_only_rank_0_writes(one_process: Path, tmp_path: Path) -> None:
    # through `cavegpt train --nproc 2`, which relaunches itself under torchrun
    result = cavegpt("train", "--nproc", "2", *SMALL, *textmix_overrides(TEXTMIX), f"log_dir={tmp_path}",
                     "run_id=n2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m cavegpt train --preset tiny" in result.stderr
    assert_close(losses(one_process), losses(tmp_path / "n2"))
    assert [p.name for p in tmp_path.iterdir()] == ["n2"]
    log = (tmp_path / "n2" / "log.txt").read_text()
    assert log.count("step:12/12 val_loss:") == 1  # one writer
    assert json.loads((tmp_path / "n2" / "run.json").read_text())["processes"] == 2


def test_resume_at_another_process_count(one_process: Path, tmp_path: Path) -> None:
    """N=1's step-6 checkpoint, continued under N=2, gives N=1's steps 7–12."""
    run = tmp_path / "n1"
    shutil.copytree(one_process, run)
    for path in run.glob("checkpoint_step000012_*.pt"):
        path.unlink()
    result = torchrun(2, "resume", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed from checkpoint_step000006.pt at step 6" in (run / "log.txt").read_text()
    assert_close(losses(one_process), losses(run))


def test_a_checkpoint_saved_by_two_processes_resumes_in_one(one_process: Path, tmp_path: Path) -> None:
    """N=2's step-6 checkpoint (the optimizer state gathered from both ranks), continued by one process,
    gives N=1's steps 7–12."""
    result = torchrun(2, "train", *SMALL, *textmix_overrides(TEXTMIX), f"log_dir={tmp_path}", "run_id=n2",
                      "checkpoint_every=6", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "n2"
    for path in run.glob("checkpoint_step000012_*.pt"):
        path.unlink()
    result = cavegpt("resume", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed from checkpoint_step000006.pt at step 6" in (run / "log.txt").read_text()
    assert_close(losses(one_process), losses(run))


def rank_of_two(rank: int, port: int) -> None:
    """This spawned process as rank ``rank`` of a 2-process gloo world, as torchrun would set it up."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def four_step_trainer(folder: str, run_id: str, *overrides: str) -> Trainer:
    config = build_config("tiny", [*SMALL[2:], *textmix_overrides(TEXTMIX), f"log_dir={folder}", f"run_id={run_id}",
                                   "num_iterations=4", "cooldown_iters=1", "val_every=0", "save_checkpoint=false",
                                   *overrides])
    return Trainer(config, echo=False)


def _train_rank(rank: int, port: int, folder: str) -> None:
    rank_of_two(rank, port)
    trainer = four_step_trainer(folder, "mp")
    try:
        trainer.run()
    finally:
        trainer.close()
    torch.save(trainer.model.state_dict(), Path(folder) / f"rank{rank}.pt")


def _poison_rank_1(rank: int, port: int, folder: str) -> None:
    rank_of_two(rank, port)
    trainer = four_step_trainer(folder, "nan")
    if rank == 1:  # this rank's own gradient is bad; rank 0's is fine until the average
        trainer.model.lm_head.weight.register_hook(lambda g: g * float("nan"))
    before = trainer.model.lm_head.weight.detach().clone()
    try:
        trainer.train_step(0, guard=True)
    except NonFiniteError as e:
        unchanged = torch.equal(before, trainer.model.lm_head.weight)
        (Path(folder) / f"rank{rank}.txt").write_text(f"{e}\nweights unchanged: {unchanged}")
    finally:
        trainer.close()


def test_a_nan_on_one_rank_stops_every_rank_before_the_weights_change(tmp_path: Path) -> None:
    mp.spawn(_poison_rank_1, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        text = (tmp_path / f"rank{rank}.txt").read_text()
        assert text == "step 0: non-finite gradient norm in parameter group(s) lm_head\nweights unchanged: True"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_rank_ends_with_the_same_weights(tmp_path: Path, textmix: Path) -> None:
    mp.spawn(_train_rank, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    start = Trainer(build_config("tiny", [*SMALL[2:], *textmix_overrides(textmix), f"log_dir={tmp_path}"]),
                    echo=False).model.state_dict()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert any(not torch.equal(first[name], start[name]) for name in first)  # they did train


def test_process_count_must_divide_the_micro_batches() -> None:
    assert local_micro_batches(16, World(0, 8, 0)) == 2
    with pytest.raises(WorldError, match="grad_accum=16 micro-batches per step cannot be split over 3"):
        local_micro_batches(16, World(0, 3, 0))


def _wait_for_an_absent_peer(rank: int, port: int, folder: str) -> None:
    rank_of_two(rank, port)
    world = join_world("cpu", timeout_minutes=0.05)  # 3 s
    if rank == 0:
        started = time.perf_counter()
        try:
            sum_over_ranks(torch.ones(()), world)
        except PeerTimeout as e:
            (Path(folder) / "message.txt").write_text(f"{time.perf_counter() - started:.1f}\n{e}")
    else:
        time.sleep(8)  # alive, but never joins: as a hung rank would
    leave_world(world)


def test_a_rank_whose_peer_never_comes_stops_with_one_sentence(tmp_path: Path) -> None:
    mp.spawn(_wait_for_an_absent_peer, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    waited, message = (tmp_path / "message.txt").read_text().split("\n", 1)
    assert 2.5 < float(waited) < 30
    assert message == ("rank 0 of 2 waited 0.05 min for the other processes to join a sum over the ranks and gave up: "
                       "one of them crashed, hung or was stopped (the limit is train.collective_timeout_minutes)")
