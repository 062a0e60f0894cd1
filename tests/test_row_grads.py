"""The embedding rows' gradients summed by token (``ModelConfig.row_grads_by_token``) against ``index_add_``: the
kernel's arithmetic in Triton's interpreter, and the trainer's path on a GPU."""

from __future__ import annotations

import pytest
import torch

from cavegpt.model.gpt import GPT, ModelConfig
from tests.fused_paths import SMALL, run_in_triton_interpreter

INTERPRETER_CHECK = """
import torch
import cavegpt.model.row_grads_triton as kernel
kernel.BLOCK, kernel.BLOCK_C = 8, 16
generator = torch.Generator().manual_seed(0)
index = torch.randint(0, 5, (3, 13), generator=generator)  # 39 rows of 5 tokens: runs across blocks of 8
index[0, :10] = 2  # one run over two whole blocks
for dtype in (torch.float32, torch.bfloat16):
    grad = torch.randn(39, 40, generator=generator).to(dtype)  # 40 channels: a partial block of 16
    expected = torch.randn(7, 40, generator=generator)  # .grad holds earlier sums, and rows no token reaches
    got = expected.clone()
    expected.index_add_(0, index.flatten(), grad.float())
    kernel.add_rows_by_token(got, *kernel.sort_tokens(index), grad)
    torch.testing.assert_close(got, expected)
print("interpreted kernel matches")
"""


def test_kernel_matches_index_add_in_the_interpreter() -> None:
    """The CUDA kernel's arithmetic, run by Triton's CPU interpreter in a process of its own (the interpreter is
    chosen when the kernel is defined)."""
    run_in_triton_interpreter(INTERPRETER_CHECK, "interpreted kernel matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: the Triton kernel")
def test_the_trainers_path_on_the_gpu_sums_as_index_add() -> None:
    grads = []
    for by_token in (False, True):
        torch.manual_seed(0)
        model = GPT(ModelConfig(**SMALL, bigram_vocab=512, row_grads_by_token=by_token)).cuda()
        with torch.no_grad():
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.1)  # the zero-initialised head would leave every row's gradient 0
        tokens = torch.randint(0, 8, (4, 257), device="cuda")  # 8 tokens: long runs, many blocks each
        rows = model.look_up(tokens[:, :-1], into_grad=True)
        model(tokens[:, :-1], torch.tensor(64), tokens[:, 1:], rows=rows).backward()
        grads.append([table.grad for table in model.param_groups()["embeddings"]])
    for by_index_add, by_token in zip(*grads):
        assert by_token.abs().sum() > 0
        torch.testing.assert_close(by_token, by_index_add, rtol=1e-5, atol=1e-5)  # float32 sums in another order
