"""``cavegpt eval MODEL --hellaswag``: HellaSwag's validation set scored by completion likelihood.

Each item is a context and four endings, one of them right. Every ending is scored as the
continuation of its context (an EOT, as every training document starts, then the context, then
a space and the ending): ``acc`` picks the ending with the lowest summed loss over its tokens,
``acc_norm`` the lowest mean loss per token. This is how Karpathy's llm.c and build-nanogpt score
it; OpenAI's GPT-2 124M gets acc 0.2859, acc_norm 0.2955 that way on the 10,042 items.

The data: the validation split of ``Rowan/hellaswag`` on the Hugging Face hub, as the parquet file
the hub converts it to, fetched with ``huggingface_hub`` into ``data/hellaswag`` once (``HF_ENDPOINT``,
``HF_HUB_OFFLINE`` and ``HF_TOKEN`` apply). ``--hellaswag-file`` takes a local copy instead (that
parquet, or the original ``hellaswag_val.jsonl``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import torch
import torch.nn.functional as F
from huggingface_hub import constants
from huggingface_hub import errors as hub_errors
from tqdm import tqdm

from cavegpt.data.fineweb import hub_error_message
from cavegpt.data.shards import DataError
from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.model.masks import BLOCK_SIZE, EOT_TOKEN

REPO_ID = "Rowan/hellaswag"
REVISION = "refs/convert/parquet"  # the hub's own parquet conversion of the dataset
FILENAME = "default/validation/0000.parquet"
DEFAULT_DIR = "data/hellaswag"
RESULT_FILE = "hellaswag.json"
GPT2_124M = {"acc": 0.2859, "acc_norm": 0.2955}  # OpenAI's GPT-2 124M by this method (llm.c, build-nanogpt)


@dataclass
class Item:
    context: str
    endings: list[str]
    label: int


def download_hellaswag(directory: str | Path = DEFAULT_DIR) -> Path:
    """The validation parquet, from the hub unless already in ``directory``."""
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        return Path(huggingface_hub.hf_hub_download(REPO_ID, FILENAME, repo_type="dataset", revision=REVISION,
                                                    local_dir=directory, endpoint=endpoint))
    except (hub_errors.HfHubHTTPError, hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled,
            OSError) as e:
        raise DataError(hub_error_message(e, endpoint, REPO_ID)) from None


def load_items(path: str | Path) -> list[Item]:
    """Items from the hub's parquet (``ctx``, ``endings``, ``label``) or the original jsonl."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError('reading the HellaSwag parquet needs pyarrow: pip install "cavegpt[hf]"') from None
        rows = pq.read_table(path, columns=["ctx", "endings", "label"]).to_pylist()
    else:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        return [Item(row["ctx"], list(row["endings"]), int(row["label"])) for row in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: not HellaSwag items (ctx, endings, label): {e!r}") from None


def _rows(item: Item) -> tuple[list[list[int]], list[int]]:
    """The four token rows (EOT + context + ending) and where each ending starts."""
    encoding = gpt2_encoding()
    context = [EOT_TOKEN, *encoding.encode_ordinary(item.context)]
    endings = [encoding.encode_ordinary(" " + ending) for ending in item.endings]
    return [context + ending for ending in endings], [len(context)] * len(endings)


@torch.no_grad()
def ending_losses(model, items: list[Item]) -> list[tuple[list[float], list[int]]]:
    """For each item, (summed loss of each ending's tokens, each ending's token count), in one batch.

    Rows are right-padded with EOT to a common length (a multiple of 128 on CUDA, FlexAttention's
    block): a causal model's logits at a row's real positions do not see the padding after them.
    """
    device = next(model.parameters()).device
    rows, starts = [], []
    for item in items:
        item_rows, item_starts = _rows(item)
        rows += item_rows
        starts += item_starts
    length = max(map(len, rows))
    if device.type == "cuda":
        length = -(-length // BLOCK_SIZE) * BLOCK_SIZE
    tokens = torch.full((len(rows), length), EOT_TOKEN, dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, :len(row)] = torch.tensor(row)
    tokens = tokens.to(device)
    window = torch.tensor(model.config.window, device=device)
    with torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda"):
        logits = model(tokens, window)
    losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), tokens[:, 1:], reduction="none").cpu()
    out, index = [], 0
    for item in items:
        sums, counts = [], []
        for _ in item.endings:
            start, end = starts[index], len(rows[index])
            sums.append(losses[index, start - 1:end - 1].sum().item())  # logits at t predict token t + 1
            counts.append(end - start)
            index += 1
        out.append((sums, counts))
    return out


def score(model, items: list[Item], batch_items: int = 8, progress: bool = True) -> dict:
    """acc and acc_norm over ``items``, ``batch_items`` items (4 rows each) per forward pass."""
    right = right_norm = 0
    with tqdm(total=len(items), desc="HellaSwag", unit="item", disable=not progress) as bar:
        for first in range(0, len(items), batch_items):
            batch = items[first:first + batch_items]
            for item, (sums, counts) in zip(batch, ending_losses(model, batch)):
                right += min(range(len(sums)), key=lambda i: sums[i]) == item.label
                right_norm += min(range(len(sums)), key=lambda i: sums[i] / counts[i]) == item.label
            bar.update(len(batch))
            bar.set_postfix(acc_norm=f"{right_norm / min(first + batch_items, len(items)):.4f}")
    return {"items": len(items), "acc": right / len(items), "acc_norm": right_norm / len(items)}


def describe(result: dict) -> str:
    """One paragraph for the terminal and the model card, with GPT-2 124M's line beside it."""
    return (f"HellaSwag (validation, {result['items']:,} items, completion style): acc {result['acc']:.4f}, "
            f"acc_norm {result['acc_norm']:.4f}. OpenAI's GPT-2 124M, scored the same way on all 10,042 items: "
            f"acc {GPT2_124M['acc']:.4f}, acc_norm {GPT2_124M['acc_norm']:.4f}.")
