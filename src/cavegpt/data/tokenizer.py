"""GPT-2's byte-pair encoding, loaded from the ranks file shipped in the package (no download).

``r50k_base.tiktoken`` is tiktoken's copy of GPT-2's BPE ranks (tiktoken: MIT licence; see
``assets/LICENSES.md``). tiktoken's own ``get_encoding("r50k_base")`` fetches the same file from the
network on first use; building the encoding from the shipped file keeps firewalled machines working.
"""

from __future__ import annotations

import functools
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

from cavegpt.model.masks import EOT_TOKEN

RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT2_VOCAB_SIZE = 50257


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 tokenizer (identical to tiktoken's ``r50k_base``), built offline."""
    ranks_file = resources.files("cavegpt.data") / "assets" / "r50k_base.tiktoken"
    with resources.as_file(ranks_file) as path:
        ranks = load_tiktoken_bpe(str(path), expected_hash=RANKS_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT_TOKEN}, explicit_n_vocab=GPT2_VOCAB_SIZE)
