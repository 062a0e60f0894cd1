"""Muon's orthogonalization, the schedules and the optimizer groups."""

from __future__ import annotations

import pytest
import torch

from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.optim import Muon, OptimConfig, Optimizers, attention_window, lr_multiplier, muon_momentum, newton_schulz


@pytest.mark.parametrize("shape", [(64, 64), (256, 64), (64, 256), (3, 96, 32), (1024, 256)])
def test_newton_schulz_singular_values_near_one(shape: tuple[int, ...]) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    g = torch.randn(*shape, generator=generator, dtype=torch.float64) * 1e-3  # scale must not matter
    singular = torch.linalg.svdvals(newton_schulz(g).double())
    # the quintic is tuned for speed, not convergence: values land near 1 (about 0.65-1.15), not on it
    assert singular.min() > 0.6 and singular.max() < 1.25, singular


def test_newton_schulz_on_a_large_square_matrix() -> None:
    # a square Gaussian matrix has singular values down to ~1/n of its largest; five steps cannot
    # lift those, but nearly all the spectrum lands near 1
    g = torch.randn(512, 512, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    singular = torch.linalg.svdvals(newton_schulz(g).double())
    assert singular.max() < 1.25
    assert (singular > 0.6).double().mean() > 0.95


def test_newton_schulz_keeps_the_singular_vectors() -> None:
    generator = torch.Generator().manual_seed(0)
    g = torch.randn(48, 32, generator=generator, dtype=torch.float64)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh  # the exact orthogonal factor, float64
    out = newton_schulz(g).double()
    cosine = (out * polar).sum() / (out.norm() * polar.norm())
    assert cosine > 0.98


def test_muon_step_matches_float64_reference() -> None:
    generator = torch.Generator().manual_seed(3)
    weight = torch.nn.Parameter(torch.randn(64, 32, generator=generator))
    grads = [torch.randn(64, 32, generator=generator) for _ in range(2)]
    optimizer = Muon([weight], lr=0.1, momentum=0.9)
    expected = weight.detach().double().clone()
    buffer = torch.zeros_like(expected)
    for grad in grads:
        weight.grad = grad.clone()
        optimizer.step()
        buffer = 0.9 * buffer + 0.1 * grad.double()
        nesterov = 0.1 * grad.double() + 0.9 * buffer
        expected -= 0.1 * 2**0.5 * newton_schulz(nesterov).double()  # 64/32 tall: scale sqrt(2)
    # the iteration runs in bf16: each step may differ by a few bf16 ulps of the update (~0.3)
    torch.testing.assert_close(weight.detach().double(), expected, atol=5e-3, rtol=0)


def test_batched_muon_gives_each_matrix_what_it_gets_alone() -> None:
    """Same-shape matrices share one Newton–Schulz stack; the result must not depend on it."""
    generator = torch.Generator().manual_seed(5)
    shapes = [(64, 32), (32, 32), (64, 32), (32, 32), (64, 32)]
    start = [torch.randn(*shape, generator=generator) for shape in shapes]
    grads = [[torch.randn(*shape, generator=generator) for shape in shapes] for _ in range(3)]
    results = []
    for batched in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in start]
        optimizer = Muon(params, lr=0.1, momentum=0.9, batched=batched)
        for step_grads in grads:
            for param, grad in zip(params, step_grads):
                param.grad = grad.clone()
            optimizer.step()
        results.append(params)
    for together, alone in zip(*results):
        assert torch.equal(together.detach(), alone.detach())


def test_seed_schedule_points() -> None:
    seed = dict(num_iterations=1750, cooldown_iters=640)
    assert lr_multiplier(0, **seed) == 1.0
    assert lr_multiplier(1109, **seed) == 1.0
    assert lr_multiplier(1110, **seed) == 1.0  # (1750 - 1110) / 640: the cooldown's first step
    assert lr_multiplier(1111, **seed) == pytest.approx(639 / 640)
    assert lr_multiplier(1750, **seed) == 0.0
    assert lr_multiplier(4, 100, 10, warmup_iters=10) == pytest.approx(0.5)


def test_muon_momentum_warmup() -> None:
    assert muon_momentum(0, 0.85, 0.95, 300) == pytest.approx(0.85)
    assert muon_momentum(150, 0.85, 0.95, 300) == pytest.approx(0.90)
    assert muon_momentum(300, 0.85, 0.95, 300) == pytest.approx(0.95)
    assert muon_momentum(1000, 0.85, 0.95, 300) == pytest.approx(0.95)


def test_window_grows_in_blocks_from_start_to_end() -> None:
    windows = [attention_window(step, 1750, 64, 1792) for step in range(1751)]
    assert windows[0] == 128 and windows[-1] == 1792
    assert all(w % 128 == 0 for w in windows)
    assert all(b >= a for a, b in zip(windows, windows[1:]))
    assert sorted(set(windows)) == list(range(128, 1793, 128))


def test_parameter_groups_cover_every_parameter_once_with_seed_learning_rates() -> None:
    model = GPT(ModelConfig(n_layer=6, n_head=2, d_model=64, backout_layer=4, vocab_size=512))
    groups = model.param_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert all(p.ndim == 2 and p.size(0) > 1 and p.size(1) > 12 for p in groups["matrices"])
    names = {id(p): n for n, p in model.named_parameters()}
    scalar_names = {names[id(p)].split(".")[-2 if "gate" in names[id(p)] else -1] for p in groups["scalars"]}
    assert scalar_names == {"lambdas", "lamb", "attn_gate", "smear_gate", "smear_lambda", "skip_weights",
                            "backout_lambda"}
    optimizers = Optimizers(groups, OptimConfig(), num_iterations=1750)
    lrs = {name: opt.param_groups[0]["lr"] for name, opt in optimizers.by_name.items()}
    assert lrs == {"embeddings": 0.6, "lm_head": 0.008, "matrices": 0.05, "scalars": 0.04}
    optimizers.set_schedule(1430)
    assert optimizers.by_name["matrices"].param_groups[0]["lr"] == pytest.approx(0.05 * 320 / 640)
    assert optimizers.by_name["matrices"].param_groups[0]["momentum"] == pytest.approx(0.95)
