"""The model elsewhere: the transformers export (logits, generate, tokenizer) loaded without cavegpt, and
publishing to the stand-in hub."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.infer.generate import generate
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN
from cavegpt.train.checkpoint import save_checkpoint
from tests.conftest import TinyRun, cavegpt
from tests.hubstub import TOKEN, StubHub

pytest.importorskip("transformers", reason='the Hugging Face export needs transformers (pip install "cavegpt[hf]")')

TINY = ModelConfig(n_layer=6, n_head=2, d_model=64, backout_layer=4, window=64, max_seq_len=1024)
# the options that shape the model: record's bigram table and soft cap, blocks without attention (layer 0 with
# a value-embedding table it ignores) or MLP, short windows
RECORD_OPTIONS = dataclasses.replace(TINY, bigram_vocab=997, logit_softcap=15.0, n_value_embeds=1,
                                     no_attention_layers=(0, 3), no_mlp_layers=(0,), short_window_layers=(1, 2, 4))
TEXTS = ["Hello world!  naïve café 12345 \n\n  spaces   ", "def f(x):\n\treturn x**2  # it's 'quoted', we'll see\r\n",
         "日本語のテキスト 🚀✨ and «quotes»", "   leading", "trailing   \n", "The capital of France is"]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,"]

# runs in a process where importing cavegpt fails: the folder must be enough for transformers
LOAD_WITHOUT_CAVEGPT = """
import sys, torch
sys.modules["cavegpt"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, inputs, out = sys.argv[1:]
given = torch.load(inputs)
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
result = {"texts": [tokenizer(text).input_ids for text in given["texts"]],
          "decoded": [tokenizer.decode(tokenizer(text).input_ids) for text in given["texts"]]}
with torch.no_grad():
    result["logits"] = model(given["tokens"]).logits
    prompts = [[tokenizer.eos_token_id] + tokenizer(p).input_ids for p in given["prompts"]]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.eos_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                               pad_token_id=tokenizer.eos_token_id)
result["generated"] = [row[width:].tolist() for row in generated]
torch.save(result, out)
"""


def trained_like(config: ModelConfig) -> GPT:
    """A random model whose zero-initialised parts are not zero, so every path shows in the logits."""
    torch.manual_seed(0)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def multi_document_batch() -> torch.Tensor:
    tokens = torch.randint(0, 50256, (2, 150), generator=torch.Generator().manual_seed(1))
    tokens[0, ::37] = EOT_TOKEN  # documents longer and shorter than the window (64)
    tokens[1, [0, 5, 6, 90]] = EOT_TOKEN
    return tokens


def load_elsewhere(folder: Path, tmp_path: Path) -> dict:
    inputs, out = tmp_path / "inputs.pt", tmp_path / "out.pt"
    torch.save({"tokens": multi_document_batch(), "texts": TEXTS, "prompts": PROMPTS}, inputs)
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_CAVEGPT, str(folder), str(inputs), str(out)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("config", [TINY, RECORD_OPTIONS], ids=["tiny", "record-options"])
def test_export_loads_in_transformers_without_cavegpt_and_computes_the_same(config: ModelConfig,
                                                                             tmp_path: Path) -> None:
    model = trained_like(config)
    checkpoint = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "config": {"model": config.__dict__}})
    result = cavegpt("export", str(checkpoint), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert result.returncode == 0, result.stderr
    assert {"config.json", "configuration_cavegpt.py", "modeling_cavegpt.py", "model.safetensors",
            "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    loaded = load_elsewhere(tmp_path / "hf", tmp_path)

    with torch.no_grad():
        expected = model(multi_document_batch(), torch.tensor(config.window))
    # float32 on the CPU, the same operations in the same order: equal to rounding (measured: identical)
    torch.testing.assert_close(loaded["logits"][..., :50257], expected[..., :50257], rtol=0, atol=1e-5)
    assert torch.isneginf(loaded["logits"][..., 50257:]).all()  # vocabulary padding never comes out

    encoding = gpt2_encoding()
    cavegpt_greedy = generate(model, [[EOT_TOKEN, *encoding.encode_ordinary(p)] for p in PROMPTS], 12)
    hf_greedy = [row[:row.index(EOT_TOKEN)] if EOT_TOKEN in row else row for row in loaded["generated"]]
    assert hf_greedy == cavegpt_greedy  # left-padded batch: the padding stays invisible

    assert loaded["texts"] == [encoding.encode_ordinary(text) for text in TEXTS]
    assert loaded["decoded"] == TEXTS


def test_greedy_generate_equals_cavegpt_sample_at_temperature_0(tmp_path: Path) -> None:
    model = trained_like(TINY)
    checkpoint = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "config": {"model": TINY.__dict__}})
    assert cavegpt("export", str(checkpoint), "--format", "hf", "--out", str(tmp_path / "hf")).returncode == 0
    sampled = cavegpt("sample", str(checkpoint), "--prompt", PROMPTS[0], "--temperature", "0", "--max-new-tokens", "12",
                      "--device", "cpu")
    assert sampled.returncode == 0, sampled.stderr
    loaded = load_elsewhere(tmp_path / "hf", tmp_path)
    text = gpt2_encoding().decode([t for t in loaded["generated"][0] if t != EOT_TOKEN][:12])
    assert sampled.stdout.splitlines()[1:] == [line for line in (PROMPTS[0] + text).splitlines()]
    from_export = cavegpt("sample", str(tmp_path / "hf"), "--prompt", PROMPTS[0], "--temperature", "0",
                          "--max-new-tokens", "12", "--device", "cpu")
    assert from_export.stdout == sampled.stdout  # cavegpt loads its Hugging Face export too


def publish(run: Path, tmp_path: Path, repo: str, monkeypatch, **env: str) -> subprocess.CompletedProcess:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no token stored by a login on this machine
    return cavegpt("export", str(run), "--out", str(tmp_path / repo.replace("/", "_")), "--push-to-hub", repo,
                   "--private")


def test_push_to_hub_uploads_the_folder_and_a_card_with_the_leaderboard_row(tiny_run: TinyRun, tmp_path: Path,
                                                                            monkeypatch) -> None:
    run = shutil.copytree(tiny_run.folder, tmp_path / "run")
    (run / "hellaswag.json").write_text(json.dumps({"items": 10042, "acc": 0.25, "acc_norm": 0.2601}))
    with StubHub({}) as hub:
        result = publish(run, tmp_path, "alice/tiny-cavegpt", monkeypatch, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN)
        assert result.returncode == 0, result.stderr
        files = hub.models["alice/tiny-cavegpt"]
        assert hub.private["alice/tiny-cavegpt"]
    assert {"README.md", "config.json", "modeling_cavegpt.py", "model.safetensors", "tokenizer.json",
            "loss.png"} <= set(files)
    assert files["model.safetensors"] == (tmp_path / "alice_tiny-cavegpt" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    report = (tiny_run.folder / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| – | (you) |"))
    assert row in card and "![loss against steps" in card and "library_name: transformers" in card
    assert 'from_pretrained("alice/tiny-cavegpt", trust_remote_code=True)' in card
    assert "10,042 items, completion style): acc 0.2500, acc_norm 0.2601" in card
    assert json.loads(card.split("## Configuration")[1].split("```json")[1].split("```")[0])["model"]["n_layer"] == 6


@pytest.mark.parametrize("case", ["no token", "no network", "name taken"])
def test_push_to_hub_errors_are_one_sentence(case: str, tiny_run: TinyRun, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with StubHub({}) as hub:
        env = {"HF_ENDPOINT": hub.url}
        repo = "alice/model"
        if case == "no network":
            env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": TOKEN}  # nothing listens on port 9
        elif case == "name taken":
            env["HF_TOKEN"], repo = TOKEN, "bob/taken"
        result = publish(tiny_run.folder, tmp_path, repo, monkeypatch, **env)
    expected = {"no token": "no Hugging Face token: set HF_TOKEN", "no network": "could not reach the Hugging Face hub",
                "name taken": "bob/taken is taken or your token may not write to it"}[case]
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and expected in error[0], result.stderr
    if case == "name taken":
        assert hub.models["bob/taken"] == {"README.md": b"bob's model\n"}  # nothing of bob's was touched
