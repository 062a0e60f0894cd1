"""The attention backends: FA4's document bounds against the mask rule, backend choice, FA4 against Flex on a GPU."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from cavegpt.data.loader import TokenStream
from cavegpt.data.shards import write_shard
from cavegpt.data.loader import document_bounds
from cavegpt.model.attention import Documents, attention_for, resolve_attention
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN, dense_mask, document_ids


def random_batch(rows: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, EOT_TOKEN, size=(rows, length), dtype=np.int64)
    tokens[rng.random((rows, length)) < 0.08] = EOT_TOKEN
    tokens[1, 0] = EOT_TOKEN  # a row that opens with a document
    tokens[0, -1] = EOT_TOKEN  # and one whose last token opens one
    return tokens


def mask_from_bounds(cu_seqlens: np.ndarray, count: int, total: int, window: int) -> np.ndarray:
    """What FA4 computes over the flattened batch: causal, window, within one cu_seqlens segment."""
    segment = np.searchsorted(cu_seqlens[:count + 1], np.arange(total), side="right")
    q, k = np.arange(total)[:, None], np.arange(total)[None, :]
    return (segment[:, None] == segment[None, :]) & (k <= q) & (q - k < window)


@pytest.mark.parametrize("seed", [0, 1])
def test_document_bounds_give_the_mask_rule(seed: int) -> None:
    rows, length, window = 3, 96, 20
    tokens = random_batch(rows, length, seed)
    cu_seqlens, count, longest = document_bounds(tokens)
    assert cu_seqlens.dtype == np.int32 and cu_seqlens.shape == (rows * length + 1,)
    assert (cu_seqlens[count:] == rows * length).all() and (np.diff(cu_seqlens[:count + 1]) > 0).all()
    assert longest == np.diff(cu_seqlens[:count + 1]).max()
    rule = dense_mask(document_ids(torch.from_numpy(tokens)), torch.tensor(window))[:, 0].numpy()  # [B, T, T]
    expected = np.zeros((rows * length, rows * length), dtype=bool)
    for r in range(rows):  # rows never see each other: block diagonal
        expected[r * length:(r + 1) * length, r * length:(r + 1) * length] = rule[r]
    assert (mask_from_bounds(cu_seqlens, count, rows * length, window) == expected).all()


def test_a_stream_asked_for_documents_carries_their_bounds(tmp_path) -> None:
    tokens = random_batch(2, 64, 2).reshape(-1)
    shard = tmp_path / "t_000000.bin"
    write_shard(shard, np.concatenate([tokens, tokens[:1]]).astype(np.uint16))
    stream = TokenStream([shard], seq_len=64, batch_size=2, documents=True)
    inputs, _, documents = stream.next_batch()
    cu_seqlens, count, longest = document_bounds(inputs.numpy())
    assert torch.equal(documents.cu_seqlens, torch.from_numpy(cu_seqlens))
    assert documents.sizes.tolist() == [count, longest] and documents.sizes.device.type == "cpu"


def test_backend_choice_on_the_cpu() -> None:
    cpu = torch.device("cpu")
    assert resolve_attention("auto", cpu) == "sdpa"
    assert resolve_attention("flex", cpu) == "flex"
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        resolve_attention("fa4", cpu)


def test_every_backend_takes_tokens_first_and_heads_second() -> None:
    torch.manual_seed(0)
    tokens = torch.from_numpy(random_batch(2, 128, 3))
    q, k, v = (torch.randn(2, 128, 3, 8) for _ in range(3))
    attend, = attention_for("sdpa", tokens, [torch.tensor(32)])
    out = attend(q, k, v)
    assert out.shape == q.shape
    torch.testing.assert_close(out[:, 0], v[:, 0])  # the first token sees only itself
    swapped = [t[:, :, [1, 0, 2]] for t in (q, k, v)]  # heads are dimension 2: swapping two swaps their outputs
    torch.testing.assert_close(attend(*swapped), out[:, :, [1, 0, 2]])


def _dense_varlen(q, k, v, cu_seqlens, left):
    """What FA4 computes on [total, H, D] tensors: softmax over the keys of the query's segment, causal,
    at most ``left`` keys back. Returns the probabilities [H, total, total] and the output."""
    segment = torch.searchsorted(cu_seqlens.long(), torch.arange(q.size(0)), right=True)
    qi, ki = torch.arange(q.size(0))[:, None], torch.arange(q.size(0))[None, :]
    allowed = (segment[:, None] == segment[None, :]) & (ki <= qi) & (qi - ki <= left)
    scores = torch.einsum("qhd,khd->hqk", q.float(), k.float()) / q.size(-1) ** 0.5
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    return probs, torch.einsum("hqk,khd->qhd", probs, v.float())


def _stand_in_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, window_size_left,
                      window_size_right, return_lse):
    assert causal and window_size_right == 0 and return_lse and cu_seqlens_q is cu_seqlens_k
    assert cu_seqlens_q[-1] == q.size(0) and max_seqlen_q == max_seqlen_k == cu_seqlens_q.diff().max()
    probs, out = _dense_varlen(q, k, v, cu_seqlens_q, window_size_left)
    return out.to(q.dtype).contiguous(), probs.new_zeros(q.size(1), q.size(0)), None, None, None


def _stand_in_backward(q, k, v, out, grad_out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                       window_size_left, window_size_right):
    probs, _ = _dense_varlen(q, k, v, cu_seqlens_q, window_size_left)
    grad_out, scale = grad_out.float(), q.size(-1) ** -0.5
    grad_v = torch.einsum("hqk,qhd->khd", probs, grad_out)
    grad_probs = torch.einsum("qhd,khd->hqk", grad_out, v.float())
    grad_scores = probs * (grad_probs - (grad_out * out.float()).sum(-1).T[..., None])
    grad_q = torch.einsum("hqk,khd->qhd", grad_scores, k.float()) * scale
    grad_k = torch.einsum("hqk,qhd->khd", grad_scores, q.float()) * scale
    return grad_q.contiguous(), grad_k.contiguous(), grad_v.contiguous()


@pytest.mark.parametrize("layers", [{}, dict(n_value_embeds=1, no_attention_layers=(3,), short_window_layers=(1, 4))],
                         ids=["every layer alike", "records' layout"])
def test_fa4_ops_through_torch_compile_with_a_dense_stand_in(monkeypatch, layers: dict) -> None:
    """cavegpt's FA4 custom ops (window − 1, the documents' count and longest, the backward's wiring) in a
    compiled model, with ``flash_attn.cute.interface`` replaced by a dense computation of what FA4
    computes. The model must give SDPA's loss and gradients, at two windows, without a graph break; with
    short-window layers, their half window too."""
    interface = types.ModuleType("flash_attn.cute.interface")
    interface._flash_attn_fwd, interface._flash_attn_bwd = _stand_in_forward, _stand_in_backward
    monkeypatch.setitem(sys.modules, "flash_attn.cute.interface", interface)
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=6, n_head=2, d_model=32, backout_layer=4, max_seq_len=256, attention="sdpa",
                            **layers))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tokens = torch.from_numpy(random_batch(2, 129, 5))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    cu_seqlens, count, longest = document_bounds(inputs.numpy())
    documents = Documents(torch.from_numpy(cu_seqlens), torch.tensor([count, longest]))
    compiled = torch.compile(model, dynamic=False, fullgraph=True, backend="aot_eager")
    window = torch.tensor(0)  # a CPU tensor: the ops read it on the host at every call
    for size in (24, 40):
        window.fill_(size)
        expected = model(inputs, window, targets)
        expected.backward()
        expected_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        model.zero_grad()
        loss = compiled(inputs, window, targets, documents=documents)
        loss.backward()
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        for name, p in model.named_parameters():
            torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
        model.zero_grad()


def _fa4_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    from cavegpt.model.fa4 import fa4_unavailable
    return fa4_unavailable(torch.device("cuda")) is None


@pytest.mark.skipif(not _fa4_ready(), reason="needs a CUDA GPU that FlashAttention-4 supports, with flash-attn-4 installed")
def test_fa4_matches_flex_forward_and_backward() -> None:
    torch.manual_seed(0)
    host = random_batch(2, 2048, 4)
    host[host == EOT_TOKEN] = 1
    host[:, ::300] = EOT_TOKEN  # documents of 300 tokens, longer than the window
    tokens = torch.from_numpy(host).cuda()
    cu_seqlens, count, longest = document_bounds(host)
    documents = Documents(torch.from_numpy(cu_seqlens).cuda(), torch.tensor([count, longest]))
    window = 256
    # Q, K and V are views into one product, as the model passes them: FA4 reads their strided rows in place
    qkv = torch.randn(2, 2048, 18, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(2, 2048, 6, 128, device="cuda", dtype=torch.bfloat16)
    results = []
    for attend in (*attention_for("fa4", tokens, [torch.tensor(window)], documents),
                   *attention_for("flex", tokens, [torch.tensor(window, device="cuda")])):
        out = attend(*qkv.split(6, dim=2))
        out.backward(grad)
        results.append([out.detach().float(), *qkv.grad.float().split(6, dim=2)])
        qkv.grad = None
    for fa4, flex in zip(*results):
        assert ((fa4 - flex).norm() / flex.norm()).item() < 1e-2
