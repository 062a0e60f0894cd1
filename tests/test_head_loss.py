"""The fused LM head + soft cap + loss against a float64 reference, the plain path and (where there is one) Triton."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.quack_gemms import MEASURED_QUACK, QUACK_INSTALLED, head_column_tile
from cavegpt.model import head_loss
from cavegpt.model.head_loss import E4M3, E4M3_MAX, fused_head_losses, rows_loss_and_grad, to_e4m3
from tests.fused_paths import run_in_triton_interpreter

SMALL = dict(n_layer=6, n_head=2, d_model=32, backout_layer=4, vocab_size=64, max_seq_len=256, attention="sdpa")


def reference_losses(logits, targets, loss_weights, softcap):
    """In float64 from ``logits`` [B, T, V]: losses[k] = mean over t with t + k < T of lse(z_t) − z_t[targets[t + k]],
    z = cap · tanh(logits / cap); (loss_weights · losses, losses)."""
    log_probs = (softcap * torch.tanh(logits.double() / softcap)).log_softmax(-1)
    T = targets.size(1)
    losses = torch.stack([-log_probs[:, :T - k].gather(-1, targets[:, k:, None]).mean()
                          for k in range(len(loss_weights))])
    return losses @ loss_weights.double(), losses


@pytest.mark.parametrize("loss_weights", [[1.0], [1.0, 0.5, 0.25]])
def test_fused_losses_and_gradients_match_float64(loss_weights: list[float]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 16, generator=generator, requires_grad=True)
    weight = (torch.randn(40, 16, generator=generator) * 2).requires_grad_()  # logits past the cap's knee
    targets = torch.randint(0, 40, (2, 7), generator=generator)
    targets[0, 3] = targets[0, 4]  # two horizons share a target: their one-hots add up
    weights = torch.tensor(loss_weights)
    objective, losses = fused_head_losses(x, weight, targets, weights, softcap=15.0, chunk_tokens=5)  # 14 rows: 5+5+4
    objective.backward()
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    ref_objective, ref_losses = reference_losses(x64 @ w64.T, targets, weights, 15.0)
    ref_objective.backward()
    assert not losses.requires_grad
    torch.testing.assert_close(losses.double(), ref_losses, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(objective.double(), ref_objective, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(weight.grad.double(), w64.grad, rtol=1e-5, atol=1e-7)


def test_gradient_scales_with_the_incoming_gradient_and_no_grad_computes_none() -> None:
    torch.manual_seed(0)
    x, weight = torch.randn(1, 6, 8, requires_grad=True), torch.randn(30, 8, requires_grad=True)
    targets = torch.randint(0, 30, (1, 6))
    objective, _ = fused_head_losses(x, weight, targets, torch.ones(1), 30.0)
    (objective / 4).backward()  # the trainer divides by the micro-batches
    quarter = x.grad.clone()
    x.grad = None
    fused_head_losses(x, weight, targets, torch.ones(1), 30.0)[0].backward()
    torch.testing.assert_close(quarter * 4, x.grad)
    with torch.no_grad():
        objective_no_grad, _ = fused_head_losses(x, weight, targets, torch.ones(1), 30.0)
    assert objective_no_grad.item() == pytest.approx(objective.item())


def test_fused_and_plain_models_agree_on_loss_and_every_gradient() -> None:
    torch.manual_seed(0)
    fused = GPT(ModelConfig(**SMALL, fused_head=True))
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    plain = GPT(ModelConfig(**SMALL, fused_head=False))
    plain.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 64, (2, 33))
    window = torch.tensor(16)
    for model in (fused, plain):
        objective, losses = model(tokens[:, :-1], window, tokens[:, 1:], loss_weights=torch.tensor([1.0, 0.5]))
        objective.backward()
        model.result = (objective.detach(), losses)
    torch.testing.assert_close(fused.result, plain.result, rtol=1e-5, atol=1e-6)
    plain_grads = dict(plain.named_parameters())
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, plain_grads[name].grad, rtol=1e-4, atol=1e-6, msg=name)
    assert fused(tokens[:, :-1], window, tokens[:, 1:]).item() == pytest.approx(
        plain(tokens[:, :-1], window, tokens[:, 1:]).item(), rel=1e-6)


def test_to_e4m3_puts_the_largest_magnitude_on_448_and_rounds_every_value_to_nearest() -> None:
    generator = torch.Generator().manual_seed(0)
    t = torch.randn(4, 96, generator=generator) * torch.tensor([1e-3, 1.0, 30.0, 100.0])[:, None]
    t[1, 7] = -500.0  # the largest magnitude is negative
    t8, scale = to_e4m3(t)
    assert t8.dtype == E4M3 and scale.shape == () and scale.item() == pytest.approx(500.0 / E4M3_MAX, rel=1e-7)
    assert t8[1, 7].float().item() == -E4M3_MAX
    scaled = t.double() / scale.double()
    normal = scaled.abs() >= 2.0 ** -6  # e4m3's normal range: 3 mantissa bits; below it, steps of 2^-9
    spacing = torch.where(normal, 2.0 ** (torch.floor(torch.log2(scaled.abs().clamp(min=2.0 ** -6))) - 3), 2.0 ** -9)
    assert ((t8.double() - scaled).abs() <= spacing / 2 + 1e-12).all()
    zeros8, zero_scale = to_e4m3(torch.zeros(3, 16))  # all zeros: a finite scale, zeros back
    assert torch.isfinite(zero_scale) and (zeros8.float() == 0).all()


def fp8_operands_in_float64(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x and W as the FP8 head's forward product sees them: rounded to e4m3 over their scales, in float64."""
    (x8, x_scale), (w8, w_scale) = to_e4m3(x), to_e4m3(weight)
    return x8.double() * x_scale.double(), w8.double() * w_scale.double()


@pytest.mark.parametrize("loss_weights", [[1.0], [1.0, 0.5, 0.25]])
def test_fp8_head_matches_float64_on_the_e4m3_rounded_operands(loss_weights: list[float]) -> None:
    """The losses are those of the rounded operands' logits; the gradients are those logits' gradients carried by
    the unrounded x and W (the backward's products are not in FP8)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 16, generator=generator, requires_grad=True)
    weight = (torch.randn(40, 16, generator=generator) * 2).requires_grad_()
    targets = torch.randint(0, 40, (2, 7), generator=generator)
    weights = torch.tensor(loss_weights)
    objective, losses = fused_head_losses(x, weight, targets, weights, softcap=15.0, chunk_tokens=5, fp8=True)
    objective.backward()
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    x_fp8, w_fp8 = fp8_operands_in_float64(x.detach(), weight.detach())
    rounding = (x_fp8 @ w_fp8.T - x64.detach() @ w64.detach().T)  # what e4m3 changes in the logits, as a constant
    assert rounding.abs().max() > 1e-3  # the operands were rounded, visibly
    ref_objective, ref_losses = reference_losses(x64 @ w64.T + rounding, targets, weights, 15.0)
    ref_objective.backward()
    torch.testing.assert_close(losses.double(), ref_losses, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(weight.grad.double(), w64.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fp8", [False, True])
def test_the_weights_copies_are_reused_only_while_held(fp8: bool) -> None:
    """Inside ``weight_copies_held`` W's rounded copies are made once (a change to W in there is not seen, as the
    trainer's micro-batches of one step need); outside, each call makes its own, whatever wrote W in place."""
    torch.manual_seed(0)
    x, weight = torch.randn(1, 6, 16), torch.randn(32, 16, requires_grad=True)
    targets = torch.randint(0, 32, (1, 6))

    def loss() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fused_head_losses(x, weight, targets, torch.ones(1), 30.0, fp8=fp8)[0].item()

    before = loss()
    with head_loss.weight_copies_held():
        assert loss() == before
        with torch.no_grad():
            weight.data.mul_(1.5)  # as fused Adam writes: in place, the version counter unmoved
        assert loss() == before
    after = loss()
    assert after != before
    with head_loss.weight_copies_held():
        assert loss() == after


def test_fp8_head_falls_back_to_the_matmul_dtype_where_fp8_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forced off (as on GPUs older than sm_89), ``fp8=True`` gives the plain product's results to the bit."""
    torch.manual_seed(0)
    x, weight = torch.randn(1, 6, 16, requires_grad=True), torch.randn(32, 16, requires_grad=True)
    targets = torch.randint(0, 32, (1, 6))
    results = []
    for fp8 in (False, True):
        objective, losses = fused_head_losses(x, weight, targets, torch.ones(1), 30.0, fp8=fp8)
        objective.backward()
        results.append((objective.detach(), losses, x.grad.clone(), weight.grad.clone()))
        x.grad = weight.grad = None
    assert not torch.equal(results[0][0], results[1][0])  # where FP8 applies (CPUs emulate it) it changes the loss
    monkeypatch.setattr(head_loss, "fp8_head_applies", lambda x, weight: False)
    objective, losses = fused_head_losses(x, weight, targets, torch.ones(1), 30.0, fp8=True)
    objective.backward()
    for got, expected in zip((objective.detach(), losses, x.grad, weight.grad), results[0]):
        assert torch.equal(got, expected)


INTERPRETER_CHECK = """
import torch
from cavegpt.model.head_loss import ahead_targets, rows_loss_and_grad
from cavegpt.model.head_loss_triton import triton_rows_loss_and_grad
generator = torch.Generator().manual_seed(1)
logits = torch.randn(6, 1000, generator=generator) * 25
logits[3, 7], logits[4, 9] = -1e4, 1e4  # far beyond the cap: σ underflows to 0, saturates at 1
ahead = ahead_targets(torch.randint(0, 1000, (2, 3), generator=generator), 3)
ahead[0, 1] = ahead[0, 0]
ahead[1, :] = torch.tensor([255, 256, 999])  # targets on the edges of the kernel's 256-wide blocks
ahead[2, 0] = 0
coefs = torch.tensor([1.0, 0.5, 0.25]) / 6
for with_grad in (False, True):
    expected, got = logits.clone(), logits.clone()
    expected_losses, expected_scales = rows_loss_and_grad(expected, ahead, coefs, 15.0, with_grad)
    got_losses, got_scales = triton_rows_loss_and_grad(got, ahead, coefs, 15.0, with_grad, block=256, num_warps=4)
    torch.testing.assert_close(got_losses, expected_losses, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(got_scales, expected_scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
print("interpreted kernel matches")
"""


def test_triton_row_kernel_matches_the_pytorch_rows_in_the_interpreter() -> None:
    """The CUDA kernel's arithmetic, run by Triton's CPU interpreter (in a process of its own: the
    interpreter is chosen when the kernel is defined)."""
    run_in_triton_interpreter(INTERPRETER_CHECK, "interpreted kernel matches")


FINISH_ROWS_CHECK = """
import torch
from cavegpt.model.head_loss import ahead_targets, rows_loss_and_grad
from cavegpt.model.head_loss_triton import triton_finish_rows

def softcapped_terms_reference(logits, softcap, tile):
    # what quack's epilogue (cavegpt.model.head_loss_quack) makes of each logit, in float64
    squashed = torch.tanh(logits.double() / softcap)
    terms = torch.exp(softcap * squashed - softcap)
    return (terms * (1 - squashed ** 2)).float(), terms.view(logits.size(0), -1, tile).sum(-1).float()

generator = torch.Generator().manual_seed(2)
x = torch.randn(6, 64, generator=generator)
w = torch.randn(1000, 64, generator=generator) * 3
w[7] = -w[7] * 500  # a logit far beyond the cap in row 3: σ underflows to 0 (e stops at 2^64)
ahead = ahead_targets(torch.randint(0, 1000, (2, 3), generator=generator), 3)
ahead[0, 1] = ahead[0, 0]  # two horizons of one row share a target
ahead[1, :] = torch.tensor([199, 200, 999])  # on the edges of the 200-wide column tiles
ahead[3, 0] = 7
coefs = torch.tensor([1.0, 0.5, 0.25]) / 6
logits = x @ w.T
for with_grad in (False, True):
    expected = logits.clone()
    expected_losses, expected_scales = rows_loss_and_grad(expected, ahead, coefs, 15.0, with_grad)
    grads, row_sums = softcapped_terms_reference(logits, 15.0, tile=200)
    got_losses, got_scales = triton_finish_rows(grads, row_sums, x, w, ahead, coefs, 15.0, with_grad)
    torch.testing.assert_close(got_losses, expected_losses, rtol=1e-5, atol=1e-5)
    if with_grad:  # the gradient: each row over its scale
        torch.testing.assert_close(grads * got_scales[:, None], expected * expected_scales[:, None],
                                   rtol=1e-4, atol=1e-9)
print("interpreted kernel matches")
"""


def test_quack_heads_rows_finish_as_the_row_kernel_in_the_interpreter() -> None:
    """The rows' last kernel after quack's epilogue (:func:`triton_finish_rows`), on a float64 reference of that
    epilogue, gives the row kernel's losses and gradient; run by Triton's CPU interpreter in a process of its own."""
    run_in_triton_interpreter(FINISH_ROWS_CHECK, "interpreted kernel matches")


def test_quack_head_column_tile_divides_the_vocabulary() -> None:
    assert head_column_tile(50304) == 192  # GPT-2's padded vocabulary
    assert head_column_tile(128 * 7) is None  # the head keeps cuBLAS and the row kernel
    assert head_column_tile(50257) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the Triton kernel under bf16 autocast")
@pytest.mark.parametrize("quack", [False, pytest.param(True, marks=pytest.mark.skipif(
    not QUACK_INSTALLED, reason=f"needs quack-kernels {MEASURED_QUACK} (the fa4 extra)"))])
def test_fused_head_on_the_gpu_matches_the_plain_path_under_autocast(quack: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1024, 768, device="cuda", requires_grad=True)
    weight = (torch.randn(50304, 768, device="cuda") * 0.05).requires_grad_()
    targets = torch.randint(0, 50257, (2, 1024), device="cuda")
    weights = torch.tensor([1.0, 0.5, 0.25], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        objective, losses = fused_head_losses(x, weight, targets, weights, 15.0, chunk_tokens=1000, quack=quack)
    objective.backward()
    fused_grads = x.grad.clone(), weight.grad.clone()
    x.grad = weight.grad = None
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = 15.0 * torch.tanh(F.linear(x, weight).float() / 15.0)
        from cavegpt.model.gpt import ahead_losses
        plain_losses = ahead_losses(logits, targets, 3)
    (plain_losses @ weights).backward()
    torch.testing.assert_close(losses, plain_losses, rtol=1e-4, atol=1e-4)
    for fused_grad, plain_grad in zip(fused_grads, (x.grad, weight.grad)):
        assert ((fused_grad - plain_grad).norm() / plain_grad.norm()).item() < 1e-2  # bf16 matmuls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the row kernel compiled for it")
def test_row_kernel_on_the_gpu_matches_the_pytorch_rows_with_targets_on_block_edges() -> None:
    from cavegpt.model.head_loss import rows_loss_and_grad
    from cavegpt.model.head_loss_triton import BLOCK_SIZE, triton_rows_loss_and_grad
    torch.manual_seed(0)
    logits = (torch.randn(64, 50304, device="cuda") * 4).bfloat16()
    ahead = torch.randint(0, 50257, (64, 3), device="cuda")
    ahead[0] = torch.tensor([BLOCK_SIZE - 1, BLOCK_SIZE, 50303])  # on blocks' edges, in the last one
    ahead[-1, 1:] = -1  # the row's end: horizons past it have no target
    coefs = torch.tensor([1.0, 0.5, 0.25], device="cuda") / 64
    expected, got = logits.float().cpu(), logits.clone()  # on the CPU, rows_loss_and_grad takes PyTorch's path
    expected_losses, expected_scales = rows_loss_and_grad(expected, ahead.cpu(), coefs.cpu(), 15.0, True)
    got_losses, got_scales = triton_rows_loss_and_grad(got, ahead, coefs, 15.0, True)
    torch.testing.assert_close(got_losses.cpu(), expected_losses, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_scales.cpu(), expected_scales, rtol=1e-5, atol=0)
    torch.testing.assert_close((got.float() * got_scales[:, None]).cpu(), expected * expected_scales[:, None],
                               rtol=1e-2, atol=1e-9)  # bf16 rounding of the gradient


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the rounding kernel compiled for it "
                    "(Triton 3.6's interpreter does not round to e4m3 to nearest, so it cannot stand in)")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_to_e4m3_on_the_gpu_matches_the_cpu_to_the_bit(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    t = (torch.randn(1003, 768, device="cuda") * torch.logspace(-4, 2, 1003, device="cuda")[:, None]).to(dtype)
    t[6, 3] = -1e3  # the largest magnitude is negative; 1,003 · 768 values: the last block is partial
    got, got_scale = to_e4m3(t)
    expected, expected_scale = to_e4m3(t.cpu())
    assert torch.equal(got_scale.cpu(), expected_scale)
    assert torch.equal(got.view(torch.uint8).cpu(), expected.view(torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs a CUDA GPU of sm_89 or newer: FP8 matmuls")
def test_fp8_head_on_the_gpu_matches_the_float64_head_of_its_rounded_operands() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1024, 768, device="cuda")
    weight = torch.randn(50304, 768, device="cuda") * 0.05
    targets = torch.randint(0, 50257, (2, 1024), device="cuda")
    weights = torch.tensor([1.0, 0.5, 0.25], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, fp8_losses = fused_head_losses(x, weight, targets, weights, 15.0, chunk_tokens=1000, fp8=True)
        _, bf16_losses = fused_head_losses(x, weight, targets, weights, 15.0, chunk_tokens=1000)
    x_fp8, w_fp8 = fp8_operands_in_float64(x.bfloat16(), weight)
    _, expected = reference_losses(x_fp8 @ w_fp8.T, targets, weights, 15.0)
    torch.testing.assert_close(fp8_losses.double(), expected, rtol=2e-3, atol=2e-3)  # bf16 logits
    assert (fp8_losses - bf16_losses).abs().max() > 1e-4  # FP8 ran
