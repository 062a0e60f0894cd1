"""The fused LM head + soft cap + loss against a float64 reference, the plain path and (where there is one) Triton."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.head_loss import fused_head_losses, rows_loss_and_grad
from tests.fused_paths import run_in_triton_interpreter

SMALL = dict(n_layer=6, n_head=2, d_model=32, backout_layer=4, vocab_size=64, max_seq_len=256, attention="sdpa")


def reference_losses(x, weight, targets, loss_weights, softcap):
    """Position by position in float64: losses[k] = mean over t with t + k < T of lse(z_t) − z_t[targets[t + k]]."""
    z = softcap * torch.tanh(x.double() @ weight.double().T / softcap)
    log_probs = z.log_softmax(-1)
    B, T = targets.shape
    losses = torch.stack([torch.stack([-log_probs[b, t, targets[b, t + k]] for b in range(B) for t in range(T - k)]).mean()
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
    ref_objective, ref_losses = reference_losses(x64, w64, targets, weights, 15.0)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the Triton kernel under bf16 autocast")
def test_fused_head_on_the_gpu_matches_the_plain_path_under_autocast() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 1024, 768, device="cuda", requires_grad=True)
    weight = (torch.randn(50304, 768, device="cuda") * 0.05).requires_grad_()
    targets = torch.randint(0, 50257, (2, 1024), device="cuda")
    weights = torch.tensor([1.0, 0.5, 0.25], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        objective, losses = fused_head_losses(x, weight, targets, weights, 15.0, chunk_tokens=1000)
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
