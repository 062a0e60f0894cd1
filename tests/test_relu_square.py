"""The fused ReLU² MLP against a float64 reference, the plain MLP, torch.compile and (where there is one) Triton."""

from __future__ import annotations

import functools
import types

import pytest
import torch
import torch.nn.functional as F

from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.quack_gemms import MEASURED_QUACK, QUACK_INSTALLED
from cavegpt.model.relu_square import relu_square_mlp
from tests.fused_paths import SMALL, assert_learns_as_the_plain_one, run_persistent_kernel_in_triton_interpreter


def plain_mlp(x, w_fc, w_proj):
    return F.linear(F.relu(F.linear(x, w_fc)).square(), w_proj)


def test_fused_mlp_output_and_gradients_match_float64_autograd() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    w_fc = torch.randn(32, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    w_proj = torch.randn(8, 32, generator=generator, dtype=torch.float64, requires_grad=True)
    grad_y = torch.randn(2, 5, 8, generator=generator, dtype=torch.float64)
    fused = relu_square_mlp(x, w_fc, w_proj)
    got = torch.autograd.grad(fused, (x, w_fc, w_proj), grad_y)
    plain = plain_mlp(x, w_fc, w_proj)
    expected = torch.autograd.grad(plain, (x, w_fc, w_proj), grad_y)
    assert (plain.detach() > 0).any() and (F.linear(x, w_fc) < 0).any()  # both sides of the ReLU are crossed
    torch.testing.assert_close(fused, plain, rtol=1e-12, atol=1e-12)
    for name, g, e in zip(("x", "w_fc", "w_proj"), got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-10, msg=name)


def test_a_model_with_the_fused_mlp_learns_as_the_plain_one() -> None:
    torch.manual_seed(0)
    plain = GPT(ModelConfig(**SMALL, fused_mlp=False))
    for zero_at_init in (plain.lm_head.weight, *(block.mlp.c_proj.weight for block in plain.blocks)):
        torch.nn.init.normal_(zero_at_init, std=0.1)  # so that gradients reach c_fc
    fused = GPT(ModelConfig(**SMALL, fused_mlp=True))
    assert_learns_as_the_plain_one(plain, fused)
    assert fused.blocks[0].mlp.c_fc.weight.grad.abs().sum() > 0


def test_the_fused_mlp_runs_only_where_a_backward_pass_does_and_the_kernels_exist(monkeypatch) -> None:
    from cavegpt.model import gpt, relu_square
    calls = []
    monkeypatch.setattr(gpt, "relu_square_mlp", lambda *args: calls.append(1) or relu_square_mlp(*args))
    model = GPT(ModelConfig(**SMALL))
    assert model.config.fused_mlp  # the default
    tokens, window = torch.randint(0, 64, (1, 17)), torch.tensor(16)
    with torch.no_grad():
        model(tokens[:, :-1], window)
    assert calls == []  # inference: the plain MLP
    model(tokens[:, :-1], window, tokens[:, 1:])
    assert len(calls) == SMALL["n_layer"]
    for (major, minor), runs in (((8, 9), False), ((9, 0), True), ((12, 0), True)):
        card = types.SimpleNamespace(major=major, minor=minor)
        monkeypatch.setattr(relu_square.torch.cuda, "get_device_properties", lambda device=None, card=card: card)
        assert relu_square.fused_mlp_runs_on(torch.device("cuda")) is runs, (major, minor)
    assert relu_square.fused_mlp_runs_on(torch.device("cpu"))


def test_quack_gemms_serve_only_sm_90_gpus_where_quack_is_installed(monkeypatch) -> None:
    from cavegpt.model import quack_gemms
    for installed in (False, True):
        monkeypatch.setattr(quack_gemms, "QUACK_INSTALLED", installed)
        for (major, minor), hopper in (((8, 9), False), ((9, 0), True), ((10, 0), False), ((12, 0), False)):
            card = types.SimpleNamespace(major=major, minor=minor)
            monkeypatch.setattr(quack_gemms.torch.cuda, "get_device_properties", lambda device=None, card=card: card)
            assert quack_gemms.quack_runs_on(torch.device("cuda")) is (installed and hopper), (installed, major)
        assert not quack_gemms.quack_runs_on(torch.device("cpu"))


def test_fused_mlp_traces_through_torch_compile_as_two_custom_ops() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(6, 8, generator=generator, requires_grad=True)
    w_fc = torch.randn(32, 8, generator=generator, requires_grad=True)
    w_proj = torch.randn(8, 32, generator=generator, requires_grad=True)
    compiled = torch.compile(relu_square_mlp, fullgraph=True, backend="aot_eager")
    out = compiled(x, w_fc, w_proj)
    out.sum().backward()
    got = [t.grad.clone() for t in (x, w_fc, w_proj)]
    for t in (x, w_fc, w_proj):
        t.grad = None
    plain_mlp(x, w_fc, w_proj).sum().backward()
    torch.testing.assert_close(out, plain_mlp(x, w_fc, w_proj))
    for g, t in zip(got, (x, w_fc, w_proj)):
        torch.testing.assert_close(g, t.grad, rtol=1e-5, atol=1e-5)


INTERPRETER_CHECK = """
import torch, triton
from cavegpt.model.relu_square_triton import relu_square_matmul
generator = torch.Generator().manual_seed(2)
a, b = torch.randn(100, 48, generator=generator), torch.randn(72, 48, generator=generator)  # ragged tiles
grad_y, w_proj = torch.randn(100, 24, generator=generator), torch.randn(24, 72, generator=generator)
# the epilogue whole, in two halves, and the warp-specialized loop
for subtile, specialized in ((1, False), (2, False), (1, True)):
    config = triton.Config({"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_K": 16, "SUBTILE": subtile,
                            "WARP_SPECIALIZE": specialized}, num_stages=2, num_warps=4)
    post = relu_square_matmul(a, b.T, config=config)  # b [N, K] read by rows of K
    torch.testing.assert_close(post, torch.relu(a @ b.T).square(), rtol=1e-5, atol=1e-3)
    for weight in (w_proj, w_proj.T.contiguous().T):  # [K, N] read by rows of N, and by rows of K
        grad_h = relu_square_matmul(grad_y, weight, post, config=config)
        torch.testing.assert_close(grad_h, (grad_y @ w_proj) * 2 * post.sqrt(), rtol=1e-5, atol=1e-3)
assert (post == 0).any() and (grad_h == 0).any() and (grad_h != 0).any()
print("interpreted kernel matches")
"""


def test_triton_kernel_matches_pytorch_in_the_interpreter() -> None:
    """The CUDA kernel's arithmetic (both epilogues, tiles cut by the edges), run by Triton's CPU
    interpreter in a process of its own (the interpreter is chosen when the kernel is defined)."""
    run_persistent_kernel_in_triton_interpreter(INTERPRETER_CHECK, "interpreted kernel matches")


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (9, 0),
                    reason="needs a CUDA GPU of sm_90 or newer: the Triton kernels (TMA) under bf16 autocast")
@pytest.mark.parametrize("quack", [False, pytest.param(True, marks=pytest.mark.skipif(
    not QUACK_INSTALLED, reason=f"needs quack-kernels {MEASURED_QUACK} (the fa4 extra)"))])
def test_fused_mlp_on_the_gpu_matches_the_plain_one_under_autocast(quack: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 1024, 768, device="cuda", requires_grad=True)
    w_fc = (torch.randn(3072, 768, device="cuda") * 0.02).requires_grad_()
    w_proj = (torch.randn(768, 3072, device="cuda") * 0.02).requires_grad_()
    grad_y = torch.randn(4, 1024, 768, device="cuda")
    results = []
    for mlp in (functools.partial(relu_square_mlp, quack=quack), plain_mlp):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = mlp(x, w_fc, w_proj)
        results.append((y.float(), *torch.autograd.grad(y, (x, w_fc, w_proj), grad_y.to(y.dtype))))
    for name, got, expected in zip(("y", "x", "w_fc", "w_proj"), *results):
        assert got.dtype == expected.dtype, name
        error = ((got.float() - expected.float()).norm() / expected.float().norm()).item()
        assert error < 1e-2, f"{name}: relative error {error:.2e}"  # bf16 operands, fp32 accumulation
