"""Generation with the KV cache against full recomputation, batching, export, eval, refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cavegpt.infer.evaluate import evaluate
from cavegpt.infer.generate import generate, sample_next
from cavegpt.infer.kv_cache import KVCache
from cavegpt.infer.load import ModelFileError, export_model, inference_weights, load_model
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN
from cavegpt.train.checkpoint import save_checkpoint
from tests.conftest import cavegpt

# a small window so that 100+ tokens exercise it three times over; the prompt holds two documents
CONFIG = ModelConfig(n_layer=6, n_head=2, d_model=64, backout_layer=4, window=32, max_seq_len=1024)
PROMPT = [EOT_TOKEN, 464, 3139, 286, EOT_TOKEN, 3666, 11, 612, 373, 257]


def random_model(config: ModelConfig) -> GPT:
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():  # random weights everywhere (the zero init would make every logit equal)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.smear_lambda.fill_(0.5)
    return model


@pytest.fixture(scope="module")
def model() -> GPT:
    return random_model(CONFIG)


VARIANTS = {"seed": CONFIG,
            "bigram": dataclasses.replace(CONFIG, bigram_vocab=997),  # record's table looks one token back too
            "layers": dataclasses.replace(CONFIG, n_value_embeds=1, no_attention_layers=(0, 3), no_mlp_layers=(0,),
                                          short_window_layers=(1, 4))}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def any_model(request) -> GPT:
    """The seed's layout; the record preset's bigram embedding; blocks without attention or MLP, short windows."""
    return random_model(VARIANTS[request.param])


def test_cache_matches_full_recomputation_for_100_tokens(any_model: GPT) -> None:
    model = any_model
    cached = generate(model, [PROMPT], max_new_tokens=110)[0]
    assert len(cached) >= 100
    assert cached == generate(model, [PROMPT], max_new_tokens=110, use_cache=False)[0]
    # and the plain training forward (no cache machinery at all) agrees on every position's logits
    sequence = torch.tensor([PROMPT + cached])
    reference = model(sequence, torch.tensor(CONFIG.window))
    cache = KVCache(model.config, 1, sequence.size(1), "cpu")
    logits = []
    with torch.no_grad():
        cache.begin(sequence[:, :len(PROMPT)], torch.ones(1, len(PROMPT), dtype=torch.bool))
        logits.append(model(sequence[:, :len(PROMPT)], torch.tensor(CONFIG.window), cache=cache))
        for t in range(len(PROMPT), sequence.size(1)):
            cache.begin(sequence[:, t:t + 1], torch.ones(1, 1, dtype=torch.bool))
            logits.append(model(sequence[:, t:t + 1], torch.tensor(CONFIG.window), cache=cache))
    torch.testing.assert_close(torch.cat(logits, 1), reference, atol=1e-4, rtol=1e-4)
    greedy = reference[0, len(PROMPT) - 1:-1, :50257].argmax(-1).tolist()
    assert greedy == cached


def test_batched_prompts_of_different_lengths_match_one_by_one(any_model: GPT) -> None:
    model = any_model
    prompts = [PROMPT, [EOT_TOKEN, 40, 588], PROMPT[4:] + [11] * 9, [EOT_TOKEN]]
    batched = generate(model, prompts, max_new_tokens=80)
    assert batched == [generate(model, [p], max_new_tokens=80)[0] for p in prompts]
    sampled = generate(model, prompts, max_new_tokens=40, temperature=0.8, top_k=50, seed=3)
    assert sampled == generate(model, prompts, max_new_tokens=40, temperature=0.8, top_k=50, seed=3)


def test_generation_stops_at_eot(model: GPT) -> None:
    with torch.no_grad():
        model.lm_head.weight[EOT_TOKEN] = model.lm_head.weight[PROMPT[-1]] * 0 + 10  # make EOT very likely
    try:
        out = generate(model, [PROMPT], max_new_tokens=50)[0]
    finally:
        with torch.no_grad():
            torch.manual_seed(1)
            model.lm_head.weight[EOT_TOKEN] = torch.randn(CONFIG.d_model) * 0.3
    assert len(out) < 50 and EOT_TOKEN not in out


def test_sampling_filters() -> None:
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0] + [-1e9] * 50300])
    generator = torch.Generator().manual_seed(0)
    assert sample_next(logits, 0.0, None, None, generator).item() == 3
    draws = {sample_next(logits, 1.0, 2, None, generator).item() for _ in range(200)}
    assert draws == {2, 3}
    draws = {sample_next(logits, 1.0, None, 0.5, generator).item() for _ in range(200)}
    assert draws <= {2, 3} and 3 in draws
    padded = torch.zeros(1, 50304)
    padded[0, 50300] = 100.0  # vocabulary padding is never produced
    assert sample_next(padded, 0.0, None, None, generator).item() < 50257


def test_export_load_same_logits_and_eval(model: GPT, tmp_path: Path, textmix: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "checkpoint_step000001_loss9.0000.pt",
                                 {"model": model.state_dict(), "config": {"model": CONFIG.__dict__},
                                  "progress": {"step": 1, "val_loss": 9.0}})
    folder = export_model(checkpoint, tmp_path / "export")
    tokens = torch.tensor([PROMPT * 3])
    expected = model(tokens, torch.tensor(CONFIG.window))
    for source in (checkpoint, folder):
        loaded, meta = load_model(source)
        torch.testing.assert_close(loaded(tokens, torch.tensor(CONFIG.window)), expected, atol=0, rtol=0)
    assert json.loads((folder / "config.json").read_text())["step"] == 1
    loss, bpb = evaluate(loaded, str(textmix / "textmix_val_*.bin"), 2048, 512)
    window = torch.tensor(CONFIG.window)  # the window evaluate() takes from the model's config
    manual = torch.stack([loaded(x, window, y) for x, y, _ in _val_batches(textmix, 4, 512)]).mean()
    assert loss == pytest.approx(manual.item(), rel=1e-5)
    assert 0 < bpb < loss  # a GPT-2 token is several bytes


def _val_batches(textmix: Path, n: int, seq_len: int):
    from cavegpt.data.loader import TokenStream, find_shards

    stream = TokenStream(find_shards(str(textmix / "textmix_val_*.bin"), "val"), seq_len, 1)
    return [stream.next_batch() for _ in range(n)]


def test_foreign_and_mismatched_files_are_refused(model: GPT, tmp_path: Path) -> None:
    folder = export_model(save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(),
                                                              "config": {"model": CONFIG.__dict__}}), tmp_path / "e")
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["d_model"] = 128
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"do not fit .*wrong shapes embed.weight: file \(50304, 64\) vs config \(50304, 128\)"):
        load_model(folder)
    meta["model"]["d_model"], meta["model"]["heads"] = 64, 3
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="unknown model settings heads"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({"format": "llama"}))
    with pytest.raises(ModelFileError, match="not a cavegpt export"):
        load_model(folder)
    other = tmp_path / "other"
    other.mkdir()
    save_file({"transformer.wte.weight": torch.zeros(4, 4)}, other / "model.safetensors")
    (other / "config.json").write_text(json.dumps({"format": "cavegpt-export-v1", "model": CONFIG.__dict__}))
    with pytest.raises(ModelFileError, match="missing .*unexpected transformer.wte.weight"):
        load_model(other)


def test_sample_and_standalone_commands(model: GPT, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "config": {"model": CONFIG.__dict__}})
    canned = cavegpt("sample", str(checkpoint), "--max-new-tokens", "5", "--device", "cpu")
    assert canned.returncode == 0, canned.stderr
    assert canned.stdout.count("--- temperature 0.0 ---") == 5 and "The capital of France is" in canned.stdout
    assert "--- temperature 0.7 ---" in canned.stdout and "--- temperature 1.0 ---" in canned.stdout
    cavegpt("export", str(checkpoint), "--out", str(tmp_path / "e"))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    result = subprocess.run([sys.executable, "-m", "cavegpt.infer.standalone", str(tmp_path / "e"), "--prompt",
                             "Hello", "--max-new-tokens", "5", "--device", "cpu", "--compile"], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0 and result.stdout.startswith("--- temperature 0.7 ---\nHello")
    code = "import sys, cavegpt.infer.standalone; print(*[m for m in sys.modules if m.startswith('cavegpt')])"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split()
    # only the model, the cache, generation, loading and the tokenizer: nothing needing numpy, tqdm or the hub
    assert set(imported) == {"cavegpt", "cavegpt.data", "cavegpt.data.tokenizer", "cavegpt.infer",
                             "cavegpt.infer.generate", "cavegpt.infer.kv_cache", "cavegpt.infer.load",
                             "cavegpt.infer.standalone", "cavegpt.model", "cavegpt.model.attention", "cavegpt.model.gpt",
                             "cavegpt.model.head_loss", "cavegpt.model.masks", "cavegpt.model.qkv_prep",
                             "cavegpt.model.quack_gemms", "cavegpt.model.relu_square"}
    refused = cavegpt("sample", str(tmp_path / "nothing.pt"))
    assert refused.returncode == 2 and "no such checkpoint file" in refused.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: only there are the matrices stored in bf16")
def test_bf16_inference_weights_leave_autocast_logits_unchanged(model: GPT) -> None:
    on_gpu = GPT(CONFIG).cuda().eval()
    on_gpu.load_state_dict(model.state_dict())
    tokens = torch.tensor([PROMPT], device="cuda")
    window = torch.tensor(CONFIG.window, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
        before = on_gpu(tokens, window)
        after = inference_weights(on_gpu)(tokens, window)
    assert on_gpu.lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(before, after)
