"""The embedding rows' gradients into ``.grad`` at a `seed` micro-batch's shape (32,768 tokens, four tables of
50,304 × 768 looked up with the same tokens): ``index_add_`` (the trainer's path) against one sort and
:func:`cavegpt.model.row_grads_triton.add_rows_by_token` per table, over blocks and warps, for uniform random
tokens (what ``cavegpt bench --synthetic`` trains on) and for English text (a textmix shard, where frequent tokens'
adds queue on the same rows), checked against each other. Prints a table last.

Usage (device, repo root): PYTHONPATH=src python benchmarks/row_grads_gpu.py [TEXTMIX_SHARD]
(default .devdata/textmix_val/textmix_val_000000.bin, a copy of ../shared/data/textmix/'s; without it only the
uniform tokens)
"""
import itertools
import sys
from pathlib import Path

import torch
from triton.testing import do_bench

import cavegpt.model.row_grads_triton as kernel
from cavegpt.data.shards import read_tokens

TOKENS, CHANNELS, VOCAB, TABLES = 32768, 768, 50304, 4


def main() -> None:
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__}", flush=True)
    generator = torch.Generator(device="cuda").manual_seed(0)
    batches = {"uniform": torch.randint(0, VOCAB, (TOKENS,), device="cuda", generator=generator)}
    shard = Path(sys.argv[1] if len(sys.argv) > 1 else ".devdata/textmix_val/textmix_val_000000.bin")
    if shard.exists():
        batches["text"] = torch.from_numpy(read_tokens(shard)[:TOKENS].astype("int64")).cuda()
    grads = [torch.randn(TOKENS, CHANNELS, device="cuda", generator=generator) for _ in range(TABLES)]
    table_grads = [torch.zeros(VOCAB, CHANNELS, device="cuda") for _ in range(TABLES)]
    rows = []
    for name, tokens in batches.items():
        print(f"{name}: {tokens.unique().numel()} distinct tokens of {TOKENS}", flush=True)

        def by_index_add(tokens=tokens):
            for table_grad, grad in zip(table_grads, grads):
                table_grad.index_add_(0, tokens, grad)
        rows.append((f"{name}: index_add_ × {TABLES}", do_bench(by_index_add)))
        expected = torch.zeros(VOCAB, CHANNELS, device="cuda").index_add_(0, tokens, grads[0])
        for block, block_c, warps in itertools.product((32, 64, 128), (128, 256), (4, 8)):
            kernel.BLOCK, kernel.BLOCK_C, kernel.NUM_WARPS = block, block_c, warps
            got = torch.zeros(VOCAB, CHANNELS, device="cuda")
            try:
                kernel.add_rows_by_token(got, *kernel.sort_tokens(tokens), grads[0])
            except Exception as error:  # a block that does not fit is reported, not fatal
                print(f"{name} block {block}, channels {block_c}, warps {warps}: {type(error).__name__}", flush=True)
                continue
            # text's frequent tokens sum thousands of rows: float32 in another order differs by ~1e-4
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)

            def by_token(tokens=tokens):
                order = kernel.sort_tokens(tokens)
                for table_grad, grad in zip(table_grads, grads):
                    kernel.add_rows_by_token(table_grad, *order, grad)
            rows.append((f"{name}: sort + by token × {TABLES}, block {block}, channels {block_c}, warps {warps}",
                         do_bench(by_token)))
    print(f"\n{'what':<72} {'ms':>7}")
    for name, ms in rows:
        print(f"{name:<72} {ms:7.3f}")


if __name__ == "__main__":
    main()
