"""The model: size, the seed's features doing what they say, both attention paths."""

from __future__ import annotations

import warnings

import pytest
import torch

from cavegpt.model.gpt import GPT, ModelConfig, ahead_losses, bigram_rows
from cavegpt.model.masks import EOT_TOKEN
from cavegpt.train.trainer import accumulate_gradients

SMALL = dict(n_layer=6, n_head=2, d_model=64, backout_layer=4, vocab_size=50304, max_seq_len=1024)


def test_full_model_parameter_count_matches_hand_count() -> None:
    with torch.device("meta"):
        model = GPT(ModelConfig())
    counted = sum(p.numel() for p in model.parameters())
    V, d, L, H = 50304, 768, 12, 6
    embeddings = 4 * V * d  # token embedding + 3 value-embedding tables
    attention = 4 * d * d + 12 * H  # Q, K, V, output + per-head gate reading 12 channels
    mlp = 2 * d * 4 * d
    per_block = attention + mlp + 2  # + the block's two lambdas
    by_hand = embeddings + L * per_block + 6 * 1 + V * d + (L // 2) + 12 + 1 + 1
    #                                    lamb ×6   head   skips   smear gate, smear λ, backout λ
    print(f"\nfull model: {counted:,} parameters ({counted - embeddings:,} outside the four embedding tables; "
          f"{model.matmul_params():,} in matrix multiplies)")
    assert abs(counted - by_hand) <= 0.01 * by_hand
    assert counted == by_hand
    assert model.matmul_params() == L * (4 * d * d + 2 * d * 4 * d + 12 * H) + V * d + 12


def test_forward_shapes_softcap_and_loss() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention="sdpa"))
    for p in model.parameters():  # leave the zero init so the logits are not all zero
        torch.nn.init.normal_(p, std=1.0)
    tokens = torch.randint(0, 50257, (2, 256))
    logits = model(tokens, torch.tensor(128))
    assert logits.shape == (2, 256, 50304)
    assert logits.abs().max() <= 30.0
    loss = model(tokens[:, :-1].contiguous(), torch.tensor(128), targets=tokens[:, 1:])
    assert torch.isfinite(loss)


def test_initial_loss_is_uniform_and_every_parameter_gets_a_gradient_after_a_step() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention="sdpa"))
    tokens = torch.randint(0, 50257, (1, 257))
    loss = model(tokens[:, :-1], torch.tensor(128), tokens[:, 1:])
    assert abs(loss.item() - torch.log(torch.tensor(50304.0)).item()) < 1e-4  # zero LM head: uniform
    # after nudging the zero-initialised weights, gradient reaches every parameter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    loss = model(tokens[:, :-1], torch.tensor(128), tokens[:, 1:])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_training_and_inference_compute_q_k_v_alike() -> None:
    """Training runs Q, K and V as one matmul over the three weights joined, inference as three: same numbers.
    (Without the prep op, which computes in float32: tests/test_qkv_prep.py holds it to the plain path.)"""
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention="sdpa", fused_qkv_prep=False)).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    tokens = torch.randint(0, 50257, (2, 128))
    training = model(tokens, torch.tensor(64))
    with torch.no_grad():
        inference = model(tokens, torch.tensor(64))
    assert training.requires_grad and not inference.requires_grad
    torch.testing.assert_close(training.detach(), inference, rtol=1e-9, atol=1e-9)  # float64: summing order only


def randomized(model: GPT) -> GPT:
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # off the zero init, so that every path shows in the logits
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_short_window_layers_attend_over_half_the_window() -> None:
    every_layer = tuple(range(SMALL["n_layer"]))
    short = randomized(GPT(ModelConfig(**SMALL, attention="sdpa", short_window_layers=every_layer)))
    plain = GPT(ModelConfig(**SMALL, attention="sdpa"))
    plain.load_state_dict(short.state_dict())
    tokens = torch.randint(0, 50257, (2, 300))  # one document per row, longer than the window
    with torch.no_grad():
        torch.testing.assert_close(short(tokens, torch.tensor(128)), plain(tokens, torch.tensor(64)), rtol=0, atol=0)
        mixed = GPT(ModelConfig(**SMALL, attention="sdpa", short_window_layers=(1, 3)))
        mixed.load_state_dict(short.state_dict())
        logits = mixed(tokens, torch.tensor(128))
        assert not torch.allclose(logits, plain(tokens, torch.tensor(128)))
        assert not torch.allclose(logits, plain(tokens, torch.tensor(64)))
    assert [mixed.config.layer_window(layer, 128) for layer in range(6)] == [128, 64, 128, 64, 128, 128]


@pytest.mark.parametrize("option, layer, part, matrices", [("no_attention_layers", 3, "attn", 4),  # Q, K, V, projection
                                                       ("no_mlp_layers", 0, "mlp", 2)])
def test_a_block_without_a_part_is_one_whose_part_adds_nothing(option: str, layer: int, part: str,
                                                                 matrices: int) -> None:
    settings = dict(**SMALL, attention="sdpa", n_value_embeds=1)
    plain = randomized(GPT(ModelConfig(**settings)))
    with torch.no_grad():
        getattr(plain.blocks[layer], part).c_proj.weight.zero_()
    skipped = GPT(ModelConfig(**settings, **{option: (layer,)}))
    assert getattr(skipped.blocks[layer], part) is None
    state = {k: v for k, v in plain.state_dict().items() if not k.startswith(f"blocks.{layer}.{part}.")}
    skipped.load_state_dict(state)  # strict: exactly that part's parameters are gone
    tokens = torch.randint(0, 50257, (2, 200))
    with torch.no_grad():
        torch.testing.assert_close(skipped(tokens, torch.tensor(128)), plain(tokens, torch.tensor(128)), rtol=0, atol=0)
    assert len(skipped.param_groups()["matrices"]) == len(plain.param_groups()["matrices"]) - matrices


def test_an_empty_block_ignores_its_value_embedding_which_the_other_end_still_reads() -> None:
    """The records' layer 0 from 2025-09-21 on: no attention, no MLP; its value-embedding table feeds the last layer."""
    model = randomized(GPT(ModelConfig(**SMALL, attention="sdpa", n_value_embeds=1, no_attention_layers=(0,),
                                       no_mlp_layers=(0,))))
    tokens = torch.randint(0, 50257, (1, 64))
    model(tokens, torch.tensor(64), tokens).backward()
    assert model.value_embeds[0].weight.grad.abs().sum() > 0  # learns through layer 5


@pytest.mark.parametrize("settings, message", [
    (dict(no_attention_layers=(0, 5), n_value_embeds=1), r"value-embedding tables \[0\] would feed no attention layer"),
    (dict(no_mlp_layers=(6,)), r"no_mlp_layers=\(6,\): layer indices run from 0 to 5"),
    (dict(short_window_layers=(6,)), r"layer indices run from 0 to 5"),
    (dict(no_attention_layers=(-1,), n_value_embeds=1), r"layer indices run from 0 to 5")])
def test_layer_options_refuse_what_cannot_work(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GPT(ModelConfig(**{**SMALL, **settings}))


@pytest.mark.parametrize("layers", [{}, dict(short_window_layers=(1, 3))], ids=["one window", "short windows"])
def test_flex_and_sdpa_models_give_the_same_logits(layers: dict) -> None:
    torch.manual_seed(0)
    flex = GPT(ModelConfig(**SMALL, **layers, attention="flex"))
    with torch.no_grad():
        for p in flex.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    sdpa = GPT(ModelConfig(**SMALL, **layers, attention="sdpa"))
    sdpa.load_state_dict(flex.state_dict())
    tokens = torch.randint(0, 50256, (2, 512))
    tokens[:, ::97] = EOT_TOKEN
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = flex(tokens, torch.tensor(256))
        b = sdpa(tokens, torch.tensor(256))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_documents_do_not_see_each_other() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention="sdpa"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.smear_lambda.zero_()  # the smear gate is the one path across a boundary (token t-1 → t)
    tokens = torch.randint(0, 50256, (1, 256))
    tokens[0, 128] = EOT_TOKEN
    changed = tokens.clone()
    changed[0, :100] = torch.randint(0, 50256, (100,))
    with torch.no_grad():
        a, b = model(tokens, torch.tensor(256)), model(changed, torch.tensor(256))
    assert not torch.allclose(a[0, :128], b[0, :128])
    torch.testing.assert_close(a[0, 128:], b[0, 128:])  # the second document never looks back


def test_smear_adds_gated_previous_token() -> None:
    model = GPT(ModelConfig(**SMALL, attention="sdpa"))
    with torch.no_grad():
        model.smear_lambda.fill_(0.5)  # gate weight 0 → sigmoid 0.5 → 0.25 of the previous token
    x = torch.randn(1, 5, 64)
    out = model.smear(x)
    torch.testing.assert_close(out[0, 0], x[0, 0])
    torch.testing.assert_close(out[0, 1:], x[0, 1:] + 0.25 * x[0, :-1])


def test_value_embedding_layout_is_012_then_012() -> None:
    config = ModelConfig()
    assert [config.value_embed_table(i) for i in range(12)] == [0, 1, 2] + [None] * 6 + [0, 1, 2]
    model_layers = GPT(ModelConfig(**SMALL)).blocks
    assert all(block.attn.lamb is not None for block in model_layers)  # 6 layers: all of them


def test_bigram_rows_match_the_records_hash() -> None:
    tokens = torch.tensor([[EOT_TOKEN, 464, 3139, 286, 50303, 0]])
    previous = torch.tensor([[-1, EOT_TOKEN, 464, 3139, 286, 50303]])
    rows = 5 * 50304
    expected = [rows - 1] + [((36313 * t) ^ (27191 * p)) % (rows - 1) for t, p in zip(tokens[0, 1:].tolist(),
                                                                                      previous[0, 1:].tolist())]
    assert bigram_rows(tokens, previous, rows).tolist() == [expected]


def test_bigram_embedding_reads_the_previous_token_and_only_it() -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, bigram_vocab=4096, attention="sdpa"))
    with torch.no_grad():
        model.bigram_embed.weight.normal_()
        model.lm_head.weight.normal_()
    window = torch.tensor(1024)
    tokens = torch.randint(0, 50000, (1, 16))
    changed = tokens.clone()
    changed[0, 7] += 1  # moves rows 7 and 8 of the bigram table, and everything from 7 on through attention
    a, b = model(tokens, window), model(changed, window)
    assert torch.equal(a[0, :7], b[0, :7]) and not torch.allclose(a[0, 8], b[0, 8])
    assert "bigram_embed.weight" in {n for n, p in model.named_parameters()
                                     if any(p is q for q in model.param_groups()["embeddings"])}


@pytest.mark.parametrize("by_token", [False, True])
def test_rows_looked_up_into_grad_sum_the_same_gradients_as_autograd(by_token: bool) -> None:
    """The trainer's path (``look_up(into_grad=True)``: each table's gradient added straight into ``.grad``)
    against plain ``backward()``, over two micro-batches that share tokens, in float64. (``row_grads_by_token``
    sums by token on CUDA only; on the CPU it must fall back to the same sums: tests/test_row_grads.py has the GPU.)"""
    torch.manual_seed(0)
    config = ModelConfig(**SMALL, bigram_vocab=4096, attention="sdpa", row_grads_by_token=by_token)
    model = randomized(GPT(config).double())
    tables = model.param_groups()["embeddings"]
    batches = [torch.randint(0, 300, (2, 65)) for _ in range(2)]  # a small range: rows repeat within and across
    window = torch.tensor(64)
    for tokens in batches:
        model(tokens[:, :-1], window, tokens[:, 1:]).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    for tokens in batches:
        rows = model.look_up(tokens[:, :-1], into_grad=True)
        accumulate_gradients(model(tokens[:, :-1], window, tokens[:, 1:], rows=rows), list(model.parameters()))
    assert len(tables) == 5
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-12, msg=name)
    model.zero_grad(set_to_none=True)  # autograd hands the tables no gradient: their sums are in .grad already
    rows = model.look_up(batches[0][:, :-1], into_grad=True)
    loss = model(batches[0][:, :-1], window, batches[0][:, 1:], rows=rows)
    assert all(g is None for g in torch.autograd.grad(loss, tables, allow_unused=True))
    assert all(table.grad is not None and table.grad.abs().sum() > 0 for table in tables)


def test_ahead_losses_match_a_position_by_position_float64_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 9, 11, generator=generator)
    targets = torch.randint(0, 11, (2, 9), generator=generator)
    losses = ahead_losses(logits, targets, horizon=3)
    log_probs = logits.double().log_softmax(-1)
    for k in (1, 2, 3):
        terms = [-log_probs[b, t, targets[b, t + k - 1]] for b in range(2) for t in range(9 - k + 1)]
        assert losses[k - 1].item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-6)
    model = GPT(ModelConfig(**SMALL, attention="sdpa"))
    tokens = torch.randint(0, 50000, (1, 32))
    window = torch.tensor(1024)
    objective, losses = model(tokens, window, tokens, loss_weights=torch.tensor([1.0, 0.0]))
    assert losses[0].item() == pytest.approx(model(tokens, window, tokens).item())
    assert objective.item() == pytest.approx(losses[0].item())


@pytest.mark.parametrize("low_precision", [False, True])
def test_low_precision_residual_keeps_the_stream_in_the_autocast_dtype_and_float32_gradients(
        low_precision: bool) -> None:
    torch.manual_seed(0)
    model = GPT(ModelConfig(**SMALL, attention="sdpa", bigram_vocab=512, low_precision_residual=low_precision))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    streams = []
    for block in model.blocks:
        block.register_forward_hook(lambda module, inputs, output: streams.append((inputs[0].dtype, output.dtype)))
    tokens = torch.randint(0, 50257, (2, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(tokens, torch.tensor(64), targets=tokens)
    loss.backward()
    expected = torch.bfloat16 if low_precision else torch.float32
    assert streams == [(expected, expected)] * len(model.blocks)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    model.zero_grad()
    model(tokens, torch.tensor(64), targets=tokens).backward()  # without autocast the stream is float32 either way
    assert streams[len(model.blocks):] == [(torch.float32, torch.float32)] * len(model.blocks)
