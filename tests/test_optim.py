"""Muon's orthogonalization, the schedules and the optimizer groups."""

from __future__ import annotations

import pytest
import torch

from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.optim import (
    Muon, OptimConfig, Optimizers, attention_window, lr_multiplier, micro_batches, mtp_weights, muon_momentum,
    newton_schulz, normalize_neurons, tokens_before)


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


# --- the record preset's options -------------------------------------------------------------


def polar_error(out: torch.Tensor, g: torch.Tensor) -> float:
    """Largest distance of ``out``'s singular values from 1, and whether its singular vectors are g's."""
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    singular = torch.linalg.svdvals(out.double())
    cosine = (out.double() * (u @ vh)).sum() / (out.double().norm() * (u @ vh).norm())
    assert cosine > 0.98
    return (singular - 1).abs().max().item()


@pytest.mark.parametrize("shape", [(64, 64), (256, 64), (64, 256)])
def test_polar_express_lands_closer_to_one_than_the_quintic(shape: tuple[int, int]) -> None:
    # a well-conditioned input (singular values 1 … 20), as momentum updates roughly are
    generator = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=generator, dtype=torch.float64))
    g = u @ torch.diag(torch.linspace(1, 20, min(shape), dtype=torch.float64)) @ v.T
    quintic = polar_error(newton_schulz(g), g)
    polar_express = polar_error(newton_schulz(g, coefficients="polar_express"), g)
    assert polar_express < 0.2 and quintic > 0.3, (polar_express, quintic)


def test_normalize_neurons_matches_float64_reference() -> None:
    generator = torch.Generator().manual_seed(2)
    updates = torch.randn(3, 48, 16, generator=generator)  # tall: statistics per row
    moment = torch.rand(3, 48, 1, generator=generator, dtype=torch.float32) + 0.5
    expected_moment = 0.9 * moment.double() + 0.1 * updates.double().square().mean(-1, keepdim=True)
    scaled = updates.double() / expected_moment.sqrt()
    expected = scaled * updates.double().norm(dim=(-2, -1), keepdim=True) / scaled.norm(dim=(-2, -1), keepdim=True)
    out = normalize_neurons(updates, moment, beta2=0.9)
    torch.testing.assert_close(moment.double(), expected_moment, rtol=1e-6, atol=0)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    wide = normalize_neurons(torch.randn(16, 48, generator=generator), torch.ones(1, 48), beta2=0.0)
    assert torch.allclose(wide.square().mean(0), wide.square().mean(0)[0].expand(48), rtol=1e-4)  # one size per column


def test_cautious_weight_decay_shrinks_only_where_the_update_agrees() -> None:
    generator = torch.Generator().manual_seed(4)
    start, grad = torch.randn(32, 32, generator=generator), torch.randn(32, 32, generator=generator)
    after = {}
    for decay in (0.0, 1.2):
        weight = torch.nn.Parameter(start.clone())
        weight.grad = grad.clone()
        Muon([weight], lr=0.1, momentum=0.9, weight_decay=decay).step()
        after[decay] = weight.detach().double()
    update = (start.double() - after[0.0]) / 0.1  # square: no shape scale
    shrinking = (update * start.double()) >= 0
    expected = start.double() - 0.1 * 1.2 * 0.1 * start.double() * shrinking - 0.1 * update
    torch.testing.assert_close(after[1.2], expected, rtol=0, atol=1e-6)
    assert 0.2 < shrinking.double().mean() < 0.8


def test_lr_floor_and_stage_multipliers() -> None:
    record = dict(num_iterations=300, cooldown_iters=150, floor=0.1, stage_multipliers=(1.0, 1.5, 2.0))
    assert [lr_multiplier(s, **record) for s in (0, 99, 100, 149)] == [1.0, 1.0, 1.5, 1.5]
    assert lr_multiplier(150, **record) == pytest.approx(1.5)  # the cooldown starts from the stage's rate
    assert lr_multiplier(225, **record) == pytest.approx(2.0 * 0.5 + 0.1 * 0.5)
    assert lr_multiplier(300, **record) == pytest.approx(0.1)
    seed = dict(num_iterations=1750, cooldown_iters=640)
    assert all(lr_multiplier(s, **seed) == (1750 - s) / 640 for s in range(1110, 1751))  # bit for bit


def test_batch_ramp_and_tokens() -> None:
    steps = [micro_batches(s, 10, 16, (2, 4, 6)) for s in range(10)]
    assert steps == [2, 2, 2, 2, 4, 4, 4, 6, 6, 6]  # stage = step * 3 // 10
    assert tokens_before(10, 16, (2, 4, 6), 100) == [0, *[100 * sum(steps[:s + 1]) for s in range(10)]]
    assert tokens_before(5, 16, (), 100)[-1] == 5 * 16 * 100


def test_mtp_weights_follow_the_record_schedule() -> None:
    def record(x: float) -> list[float]:  # record 2025-12-22: [1, 0.5, 0.25->0] -> [1, 0.5->0] -> [1]
        if x < 1 / 3:
            return [1.0, 0.5, 0.25 * (1 - 3 * x)]
        if x < 2 / 3:
            return [1.0, 0.5 * (1 - (3 * x - 1)), 0.0]
        return [1.0, 0.0, 0.0]
    for step in range(0, 301, 7):
        assert mtp_weights(step, 300, (0.5, 0.25)) == pytest.approx(record(step / 300), abs=1e-12)
    assert mtp_weights(5, 300, ()) == [1.0]


def test_newton_schulz_products_on_the_cpu_round_as_a_bf16_matmul() -> None:
    """The CPU's float32 route for the bf16 products gives the bf16 matmul's values, to its last bit of rounding."""
    from cavegpt.optim.muon import _bf16_product
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(3, 48, 80, generator=generator).bfloat16() for _ in range(2))
    got, expected = _bf16_product(a, b.mT), a @ b.mT
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2 ** -7, atol=1e-6)
    assert (got == expected).float().mean() > 0.9  # the same sums, rounded once: almost all identical
