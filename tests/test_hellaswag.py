"""HellaSwag: the data from the stand-in hub, the scores against hand arithmetic, batching, the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.infer.hellaswag import (FILENAME, REPO_ID, Item, download_hellaswag, ending_losses, load_items,
                                     score)
from cavegpt.model.gpt import GPT, ModelConfig
from cavegpt.model.masks import EOT_TOKEN
from cavegpt.train.checkpoint import save_checkpoint
from tests.conftest import cavegpt
from tests.hubstub import StubHub

ITEMS = [
    Item("A man is sitting on a roof. He", [" starts pulling up roofing.", "cat", "is ripping level tiles off.", "dog"], 0),
    Item("The chef cuts the onions and", ["cat cat", "cries.", "dog dog dog", "the cat"], 2),
    Item("Kids play in the snow", ["cat", "and build a snowman.", "dog", "cat dog"], 3),
    Item("The dog runs", ["dog", "cat dog dog", "dog dog", "dog dog dog"], 1),
]


def parquet_bytes(items: list[Item], path: Path) -> bytes:
    """The hub's conversion stores label as a string."""
    table = pa.table({"ind": list(range(len(items))), "ctx": [i.context for i in items],
                      "endings": [i.endings for i in items], "label": [str(i.label) for i in items]})
    pq.write_table(table, path)
    return path.read_bytes()


class Unigram(nn.Module):
    """Ignores context: every position gets the same logits, ``favoured`` ids at ``boost``, the rest at 0."""

    def __init__(self, favoured: list[int], boost: float):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(50304))
        self.logits.data[favoured] = boost
        self.config = ModelConfig(window=1024)

    def forward(self, tokens: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*tokens.shape, -1)


def test_the_validation_file_comes_from_the_hub_and_reads_as_items(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    served = parquet_bytes(ITEMS, tmp_path / "served.parquet")
    with StubHub({FILENAME: served}, repo=REPO_ID) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        path = download_hellaswag(tmp_path / "data")
        assert path.read_bytes() == served and load_items(path) == ITEMS
        again = download_hellaswag(tmp_path / "data")  # cached: no second download
        assert again == path and len(hub.gets(FILENAME)) == 1
    jsonl = tmp_path / "hellaswag_val.jsonl"  # the original release's format reads the same
    jsonl.write_text("".join(json.dumps({"ctx": i.context, "endings": i.endings, "label": i.label}) + "\n"
                             for i in ITEMS))
    assert load_items(jsonl) == ITEMS


def test_scores_equal_the_hand_arithmetic() -> None:
    encoding = gpt2_encoding()
    cat, dog = encoding.encode_ordinary(" cat"), encoding.encode_ordinary(" dog")
    assert len(cat) == len(dog) == 1
    boost = 6.0
    model = Unigram(favoured=[cat[0]], boost=boost)
    # with these logits every token costs Z = ln(50303 + e^6) nats, " cat" costs Z − 6
    Z = math.log(50303 + math.exp(boost))
    expected_acc = expected_norm = 0
    for item in ITEMS:
        n = [len(encoding.encode_ordinary(" " + ending)) for ending in item.endings]
        cats = [encoding.encode_ordinary(" " + ending).count(cat[0]) for ending in item.endings]
        sums = [n_i * Z - boost * c_i for n_i, c_i in zip(n, cats)]
        means = [s / n_i for s, n_i in zip(sums, n)]
        expected_acc += sums.index(min(sums)) == item.label
        expected_norm += means.index(min(means)) == item.label
    # With Z ≈ 10.83: item 1's " cat" (Z − 6) is lowest by sum and by mean, and so are item 2's " cat cat"
    # (2Z − 12; mean Z − 6) and item 3's " cat" (Z − 6): their labels 0, 2, 3 are wrong both ways.
    # Item 4 tells the two apart: " dog" has the lowest sum (Z against 3Z − 6 for " cat dog dog"), but
    # " cat dog dog" the lowest mean (Z − 2 against Z): acc misses it, acc_norm gets it.
    assert (expected_acc, expected_norm) == (0, 1)
    assert score(model, ITEMS, batch_items=3, progress=False) == {"items": 4, "acc": 0.0, "acc_norm": 0.25}
    relabelled = [Item(i.context, i.endings, label) for i, label in zip(ITEMS, (1, 0, 0, 1))]
    assert score(model, relabelled, batch_items=2, progress=False) == {"items": 4, "acc": 0.75, "acc_norm": 1.0}


def small_model() -> GPT:
    torch.manual_seed(0)
    model = GPT(ModelConfig(n_layer=6, n_head=2, d_model=64, backout_layer=4, window=64, max_seq_len=1024,
                            attention="sdpa")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_a_batch_of_mixed_lengths_scores_like_each_item_alone_and_like_the_plain_loss() -> None:
    model = small_model()
    together = ending_losses(model, ITEMS)
    alone = [ending_losses(model, [item])[0] for item in ITEMS]
    for (sums_a, counts_a), (sums_b, counts_b) in zip(together, alone):
        assert counts_a == counts_b and sums_a == pytest.approx(sums_b, rel=1e-5)
    encoding = gpt2_encoding()  # the first item's second ending, scored by hand from the model's logits
    context = [EOT_TOKEN, *encoding.encode_ordinary(ITEMS[0].context)]
    ending = encoding.encode_ordinary(" " + ITEMS[0].endings[1])
    row = torch.tensor([context + ending])
    with torch.no_grad():
        log_probs = model(row, torch.tensor(64))[0].log_softmax(-1)
    by_hand = -sum(log_probs[len(context) + i - 1, token].item() for i, token in enumerate(ending))
    assert together[0][0][1] == pytest.approx(by_hand, rel=1e-5) and together[0][1][1] == len(ending)


def test_eval_hellaswag_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model = small_model()
    checkpoint = save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(),
                                                     "config": {"model": model.config.__dict__}})
    with StubHub({FILENAME: parquet_bytes(ITEMS, tmp_path / "served.parquet")}, repo=REPO_ID) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        full = cavegpt("eval", str(checkpoint), "--hellaswag", "--device", "cpu", cwd=tmp_path)
        partial = cavegpt("eval", str(tmp_path / "c.pt"), "--hellaswag", "--limit", "2", "--device", "cpu",
                          cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    expected = score(model, ITEMS, progress=False)
    assert f"acc {expected['acc']:.4f}, acc_norm {expected['acc_norm']:.4f}" in full.stdout
    assert "OpenAI's GPT-2 124M" in full.stdout and "acc_norm 0.2955" in full.stdout
    assert json.loads((tmp_path / "hellaswag.json").read_text()) == pytest.approx(expected)
    assert partial.returncode == 0 and "2 items" in partial.stdout and "kept in" not in partial.stdout
