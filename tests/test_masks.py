"""The attention mask: BlockMask vs brute force, and the two attention paths against each other."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from cavegpt.model.masks import BLOCK_SIZE, EOT_TOKEN, _ordered, dense_mask, document_ids, flex_block_mask


def random_documents(batch: int, seq_len: int, mean_doc_len: float, generator: torch.Generator) -> torch.Tensor:
    tokens = torch.randint(0, EOT_TOKEN, (batch, seq_len), generator=generator)
    eot = torch.rand(batch, seq_len, generator=generator) < 1 / mean_doc_len
    return tokens.masked_fill(eot, EOT_TOKEN)


def brute_force_mask(tokens: torch.Tensor, window: int) -> torch.Tensor:
    """Plain loops: q sees k iff k <= q, q - k < window and no EOT in (k, q]."""
    batch, seq_len = tokens.shape
    mask = torch.zeros(batch, seq_len, seq_len, dtype=torch.bool)
    for b in range(batch):
        row = tokens[b].tolist()
        for q in range(seq_len):
            for k in range(q, max(-1, q - window), -1):
                mask[b, q, k] = True
                if row[k] == EOT_TOKEN:  # k opens q's document: nothing earlier is in it
                    break
    return mask


def block_mask_to_token_mask(block_mask, docs: torch.Tensor) -> torch.Tensor:
    """Expand a BlockMask to tokens: full blocks all True, partial blocks through mask_mod."""
    batch, seq_len = docs.shape
    n = seq_len // BLOCK_SIZE
    positions = torch.arange(seq_len)
    out = torch.zeros(batch, seq_len, seq_len, dtype=torch.bool)
    kinds = ((block_mask.kv_num_blocks, block_mask.kv_indices, False),
             (block_mask.full_kv_num_blocks, block_mask.full_kv_indices, True))
    for counts, indices, is_full in kinds:
        for b in range(batch):
            for i in range(n):
                for j in indices[b, 0, i, :counts[b, 0, i]].tolist():
                    qs = positions[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]
                    ks = positions[j * BLOCK_SIZE:(j + 1) * BLOCK_SIZE]
                    if is_full:
                        tile = torch.ones(BLOCK_SIZE, BLOCK_SIZE, dtype=torch.bool)
                    else:
                        tile = block_mask.mask_mod(torch.tensor(b), torch.tensor(0), qs[:, None], ks[None, :])
                    out[b, qs[0]:qs[-1] + 1, ks[0]:ks[-1] + 1] |= tile
    return out


@pytest.mark.parametrize("window,mean_doc_len", [(128, 300.0), (200, 90.0), (1792, 700.0), (64, 2000.0)])
def test_block_mask_equals_brute_force(window: int, mean_doc_len: float) -> None:
    generator = torch.Generator().manual_seed(window)
    tokens = random_documents(2, 1024, mean_doc_len, generator)
    docs = document_ids(tokens)
    block_mask = flex_block_mask(docs, torch.tensor(window))
    expected = brute_force_mask(tokens, window)
    assert torch.equal(block_mask_to_token_mask(block_mask, docs), expected)
    assert torch.equal(dense_mask(docs, torch.tensor(window))[:, 0], expected)


def test_full_blocks_are_really_full_and_skipped_blocks_empty() -> None:
    generator = torch.Generator().manual_seed(0)
    tokens = random_documents(1, 2048, 500.0, generator)
    docs = document_ids(tokens)
    window = 640
    block_mask = flex_block_mask(docs, torch.tensor(window))
    dense_blocks = brute_force_mask(tokens, window).view(1, 16, BLOCK_SIZE, 16, BLOCK_SIZE).transpose(2, 3)
    full = block_mask.full_kv_num_blocks.sum().item()
    assert full == dense_blocks.all(dim=(-1, -2)).sum().item()  # every all-True tile is marked full
    assert full > 0
    listed = block_mask.kv_num_blocks.sum().item() + full
    assert listed < 16 * 17 / 2  # the window and the documents do skip work


def test_ordered_is_a_stable_sort_of_used_blocks_first() -> None:
    blocks = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(2)) < 0.3
    blocks[0, 0] = False  # a row with no block used
    blocks[0, 1] = True  # and one with every block
    counts, indices = _ordered(blocks)
    expected = blocks.to(torch.int8).argsort(dim=-1, descending=True, stable=True)
    assert torch.equal(counts[:, 0], blocks.sum(dim=-1, dtype=torch.int32))
    assert torch.equal(indices[:, 0], expected.to(torch.int32))


def test_query_block_side_equals_torch_transpose() -> None:
    """The backward's per-key-block lists, built without sorting, match what BlockMask derives itself."""
    tokens = random_documents(2, 2048, 400.0, torch.Generator().manual_seed(3))
    ours = flex_block_mask(document_ids(tokens), torch.tensor(640))
    torchs = BlockMask.from_kv_blocks(ours.kv_num_blocks, ours.kv_indices, ours.full_kv_num_blocks,
                                      ours.full_kv_indices, BLOCK_SIZE=BLOCK_SIZE)
    for name in ("q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices"):
        assert torch.equal(getattr(ours, name), getattr(torchs, name)), name


def test_flex_and_sdpa_paths_agree_in_forward() -> None:
    generator = torch.Generator().manual_seed(1)
    tokens = random_documents(2, 512, 150.0, generator)
    docs, window = document_ids(tokens), torch.tensor(256)
    q, k, v = (torch.randn(2, 3, 512, 32, generator=generator) for _ in range(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager CPU flex_attention warns that it is unfused
        flex = flex_attention(q, k, v, block_mask=flex_block_mask(docs, window))
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask(docs, window))
    torch.testing.assert_close(flex, sdpa, atol=1e-5, rtol=1e-5)


def test_sequence_length_must_be_whole_blocks() -> None:
    with pytest.raises(ValueError, match="multiple of 128"):
        flex_block_mask(torch.zeros(1, 200, dtype=torch.long), torch.tensor(64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the mask as inductor builds it there")
@pytest.mark.parametrize("seq_len", [16384, 32768])
def test_compiled_block_mask_equals_eager_on_gpu(seq_len: int) -> None:
    """128 blocks per row (16,384 tokens): argsort's sorting networks were slow to build there;
    256 (32,768): a transposed view of the block rule made inductor fail to generate a kernel."""
    tokens = random_documents(1, seq_len, 700.0, torch.Generator().manual_seed(4)).cuda()
    docs, window = document_ids(tokens), torch.tensor(1792, device="cuda")
    names = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
             "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")

    def mask_tensors(docs: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, ...]:
        block_mask = flex_block_mask(docs, window)
        return tuple(getattr(block_mask, name) for name in names)

    for name, compiled, eager in zip(names, torch.compile(mask_tensors)(docs, window), mask_tensors(docs, window)):
        assert torch.equal(compiled, eager), name
