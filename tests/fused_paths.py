"""What the fused paths' tests share: a small model, the check that a fused model learns as the plain one, and
Triton's interpreter in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from cavegpt.model.gpt import GPT

SMALL = dict(n_layer=4, n_head=2, d_model=32, backout_layer=2, n_value_embeds=1, vocab_size=64, max_seq_len=64,
             attention="sdpa")


def assert_learns_as_the_plain_one(plain: GPT, fused: GPT) -> None:
    """``fused``, given ``plain``'s weights, has its loss and every gradient on one batch."""
    fused.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, plain.config.vocab_size, (2, 33))
    window = torch.tensor(16)
    losses = []
    for model in (plain, fused):
        loss = model(tokens[:, :-1], window, tokens[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a version string such as ``3.6.0`` or ``2.4.6``."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def run_persistent_kernel_in_triton_interpreter(code: str, done_line: str) -> None:
    """:func:`run_in_triton_interpreter` for the persistent matmuls, whose loops have computed bounds: skips where
    the installed Triton's interpreter cannot run those."""
    import numpy as np
    triton = pytest.importorskip("triton", reason="triton is not installed (it comes with CUDA builds of PyTorch)")
    if release(triton.__version__) < (3, 8) and release(np.__version__) >= (2, 3):
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run loops with computed bounds on NumPy >= 2.3 "
                    "(Triton 3.8's can)")
    run_in_triton_interpreter(code, done_line)


def run_in_triton_interpreter(code: str, done_line: str) -> None:
    """``code`` run by Python with Triton's CPU interpreter, in a process of its own (the interpreter is chosen when a
    kernel is defined); it must exit cleanly and print ``done_line``. Skips where Triton is not installed."""
    pytest.importorskip("triton", reason="triton is not installed (it comes with CUDA builds of PyTorch)")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done_line in done.stdout
