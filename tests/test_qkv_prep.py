"""Attention's inputs in one op each way against the plain path (norm, rotary, the value mix), torch.compile, and
(where there is one) Triton."""

from __future__ import annotations

import pytest
import torch

from cavegpt.model.gpt import GPT, ModelConfig, Rotary, prepare_plain
from cavegpt.model.qkv_prep import prepare_qkv
from tests.fused_paths import SMALL, assert_learns_as_the_plain_one, run_in_triton_interpreter


def plain_prep(qkv, rotary, value_embed, lamb):
    """CausalSelfAttention's own path from the joined product, in the dtype it computes in (float32)."""
    return prepare_plain(*qkv.split(qkv.size(2) // 3, dim=2), rotary, value_embed, lamb)


def inputs(heads: int = 3, head_dim: int = 16, with_embed: bool = True, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    qkv = (torch.randn(2, 7, 3 * heads, head_dim, generator=generator) * 3).requires_grad_()
    embed = torch.randn(2, 7, heads * head_dim, generator=generator).requires_grad_() if with_embed else None
    lamb = torch.tensor(0.3, requires_grad=True) if with_embed else None
    grads = [torch.randn(2, 7, heads, head_dim, generator=generator) for _ in range(3)]
    return qkv, embed, lamb, grads, Rotary(head_dim, 32)


@pytest.mark.parametrize("with_embed", [True, False])
def test_prepare_qkv_matches_the_plain_path_forward_and_backward(with_embed: bool) -> None:
    qkv, embed, lamb, grads, rotary = inputs(with_embed=with_embed)
    leaves = [t for t in (qkv, embed, lamb) if t is not None]
    fused = prepare_qkv(qkv, rotary.cos, rotary.sin, embed, lamb)
    got = torch.autograd.grad(fused, leaves, grads)
    plain = plain_prep(qkv, rotary, embed, lamb)
    expected = torch.autograd.grad(plain, leaves, grads)
    for name, f, p in zip("qkv", fused, plain):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5, msg=name)
    for name, g, e in zip(("qkv", "value embedding", "lambda"), got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5, msg=name)
    assert got[0][:, :, :6].abs().sum() > 0  # Q and K's gradients go through the norm and the rotation
    heads_first = [g.transpose(1, 2).contiguous().transpose(1, 2) for g in grads]  # FlexAttention's gradients
    fused = prepare_qkv(qkv, rotary.cos, rotary.sin, embed, lamb)
    for name, g, e in zip(("qkv", "value embedding", "lambda"), torch.autograd.grad(fused, leaves, heads_first), got):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6, msg=name)


def test_the_rotation_turns_a_quarter_of_each_head_and_the_norm_is_rms() -> None:
    qkv, _, _, _, rotary = inputs(heads=1, head_dim=8, with_embed=False)
    q, k, v = (t.detach() for t in prepare_qkv(qkv, rotary.cos, rotary.sin))
    x = qkv.detach()
    assert torch.equal(v, x[:, :, 2:])
    for got, raw in ((q, x[:, :, :1]), (k, x[:, :, 1:2])):
        normed = raw / raw.square().mean(-1, keepdim=True).add(torch.finfo(torch.float32).eps).sqrt()
        torch.testing.assert_close(got.norm(dim=-1), normed.norm(dim=-1))  # a rotation keeps the norm
        torch.testing.assert_close(got[:, 0], normed[:, 0])  # position 0: no turn
        # channels 2, 3 and 6, 7 pair with zero frequencies: never turned
        torch.testing.assert_close(got[..., [2, 3, 6, 7]], normed[..., [2, 3, 6, 7]])
        assert not torch.allclose(got[:, 1:, :, [0, 1, 4, 5]], normed[:, 1:, :, [0, 1, 4, 5]])


def test_a_model_with_the_prep_op_learns_as_the_plain_one() -> None:
    torch.manual_seed(0)
    plain = GPT(ModelConfig(**SMALL, fused_qkv_prep=False))
    for zero_at_init in (plain.lm_head.weight, *(block.attn.c_proj.weight for block in plain.blocks)):
        torch.nn.init.normal_(zero_at_init, std=0.1)  # so that gradients reach Q, K and V
    fused = GPT(ModelConfig(**SMALL, fused_qkv_prep=True))
    assert_learns_as_the_plain_one(plain, fused)
    assert fused.blocks[0].attn.lamb.grad != 0 and fused.blocks[0].attn.c_q.weight.grad.abs().sum() > 0


def test_prepare_qkv_traces_through_torch_compile() -> None:
    qkv, embed, lamb, grads, rotary = inputs(seed=1)
    compiled = torch.compile(prepare_qkv, fullgraph=True, backend="aot_eager")
    for value_embed, mix in ((embed, lamb), (None, None)):
        leaves = [t for t in (qkv, value_embed, mix) if t is not None]
        got = torch.autograd.grad(compiled(qkv, rotary.cos, rotary.sin, value_embed, mix), leaves, grads)
        expected = torch.autograd.grad(prepare_qkv(qkv, rotary.cos, rotary.sin, value_embed, mix), leaves, grads)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e)


INTERPRETER_CHECK = """
import torch
from cavegpt.model.gpt import Rotary
from cavegpt.model.qkv_prep import _norm_rotate_backward_reference, _norm_rotate_reference
from cavegpt.model.qkv_prep_triton import BLOCK_ROWS, norm_rotate, norm_rotate_backward, v_backward
generator = torch.Generator().manual_seed(3)
rotary = Rotary(16, 64)
qkv = torch.randn(2, 11, 9, 16, generator=generator) * 3  # 2 * 11 * 6 = 132 rows: a partial last block
assert (2 * 11 * 6) % BLOCK_ROWS
qk = qkv[:, :, :6]  # Q and K of the joined product: rows 9 heads apart
grad = torch.randn(2, 11, 6, 16, generator=generator)
torch.testing.assert_close(norm_rotate(qk, rotary.cos, rotary.sin), _norm_rotate_reference(qk, rotary.cos, rotary.sin))
grad_qkv = torch.full_like(qkv, float("nan"))
norm_rotate_backward(grad, qk, rotary.cos, rotary.sin, out=grad_qkv[:, :, :6])
torch.testing.assert_close(grad_qkv[:, :, :6], _norm_rotate_backward_reference(grad, qk, rotary.cos, rotary.sin))
assert grad_qkv[:, :, 6:].isnan().all()  # V's part untouched
grad_v, lamb = torch.randn(2, 11, 3, 16, generator=generator), torch.tensor(0.3)
v_backward(grad_v, lamb, out=grad_qkv[:, :, 6:])
torch.testing.assert_close(grad_qkv[:, :, 6:], grad_v * 0.7)
torch.testing.assert_close(grad_qkv[:, :, :6], _norm_rotate_backward_reference(grad, qk, rotary.cos, rotary.sin))
v_backward(grad_v, None, out=grad_qkv[:, :, 6:])  # without a value embedding: V's gradient as it came
assert torch.equal(grad_qkv[:, :, 6:], grad_v)
print("interpreted kernels match")
"""


def test_triton_kernels_match_the_pytorch_arithmetic_in_the_interpreter() -> None:
    """The CUDA kernels' arithmetic, run by Triton's CPU interpreter in a process of its own (the interpreter is
    chosen when the kernel is defined)."""
    run_in_triton_interpreter(INTERPRETER_CHECK, "interpreted kernels match")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the Triton kernels under bf16 autocast")
@pytest.mark.parametrize("with_embed", [True, False])
def test_prepare_qkv_on_the_gpu_matches_the_plain_path_compiled(with_embed: bool) -> None:
    generator = torch.Generator(device="cuda").manual_seed(4)
    qkv = (torch.randn(1, 4096, 18, 128, device="cuda", generator=generator) * 3).bfloat16().requires_grad_()
    embed = torch.randn(1, 4096, 768, device="cuda", generator=generator).requires_grad_() if with_embed else None
    lamb = torch.tensor(0.3, device="cuda", requires_grad=True) if with_embed else None
    grads = [torch.randn(1, 4096, 6, 128, device="cuda", generator=generator).bfloat16() for _ in range(3)]
    rotary = Rotary(128, 8192).cuda()
    leaves = [t for t in (qkv, embed, lamb) if t is not None]
    results = []
    for prep in (lambda *a: prepare_qkv(qkv, rotary.cos, rotary.sin, *a),
                 lambda *a: tuple(t.bfloat16() for t in plain_prep(qkv, rotary, *a))):
        outputs = torch.compile(prep)(embed, lamb)
        results.append((outputs, torch.autograd.grad(outputs, leaves, grads)))
    (fused, fused_grads), (plain, plain_grads) = results
    for f, p in zip(fused, plain):
        torch.testing.assert_close(f.float(), p.float(), rtol=1e-2, atol=1e-2)  # one bf16 rounding each
    for f, p in zip(fused_grads[:2], plain_grads[:2]):
        assert ((f.float() - p.float()).norm() / p.float().norm()).item() < 1e-2
    if with_embed:  # λ's gradient, a sum of 3M products that nearly cancel, against float64 (the plain path's
        v = qkv.detach()[:, :, 12:].double()  # is off by 2.7 of 120 compiled, 10.7 eager: session 18's call 5)
        terms = grads[2].double() * (embed.detach().double().view_as(v) - v)
        assert abs(fused_grads[2].item() - terms.sum().item()) < 1e-8 * terms.abs().sum().item()
