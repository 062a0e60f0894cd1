"""Talk to a trained model: ``python -m cavegpt.infer.standalone EXPORTED_FOLDER [--prompt TEXT]``.

Needs only torch, tiktoken and safetensors (the seed's ``inference_standalone.py``, grown up). With
no prompt it runs the canned prompts greedily and at temperatures 0.7 and 1.0. ``cavegpt sample``
is the same with training checkpoints accepted too.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from typing import TextIO

import torch

from cavegpt.data.tokenizer import gpt2_encoding
from cavegpt.infer.generate import CANNED_PROMPTS, CANNED_TEMPERATURES, generate
from cavegpt.infer.load import ModelFileError, load_model
from cavegpt.model.gpt import GPT
from cavegpt.model.masks import EOT_TOKEN


def complete(model: GPT, prompt: str, temperature: float, max_new_tokens: int, top_k: int | None = None,
             top_p: float | None = None, seed: int = 0, out: TextIO = sys.stdout, compile_step: bool = False) -> str:
    """Stream one completion of ``prompt`` to ``out`` as it is generated; return its text."""
    encoding = gpt2_encoding()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a token may end mid-character
    pieces: list[str] = []

    def show(tokens: torch.Tensor, finished: torch.Tensor) -> None:
        token = int(tokens[0])
        if token != EOT_TOKEN:
            piece = decoder.decode(encoding.decode_single_token_bytes(token))
            pieces.append(piece)
            out.write(piece)
            out.flush()

    out.write(prompt)
    generate(model, [[EOT_TOKEN, *encoding.encode_ordinary(prompt)]], max_new_tokens, temperature, top_k, top_p,
             seed, on_token=show, compile_step=compile_step)
    out.write(decoder.decode(b"", final=True) + "\n")
    return "".join(pieces)


def run_prompts(model: GPT, prompts: list[str] | None, temperatures: list[float], max_new_tokens: int,
                top_k: int | None, top_p: float | None, seed: int, num_samples: int, out: TextIO = sys.stdout,
                compile_step: bool = False) -> None:
    for prompt in prompts or CANNED_PROMPTS:
        for temperature in temperatures:
            for sample in range(num_samples):
                out.write(f"--- temperature {temperature}" + (f", sample {sample + 1}" if num_samples > 1 else "")
                          + " ---\n")
                complete(model, prompt, temperature, max_new_tokens, top_k, top_p, seed + sample, out, compile_step)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", help="text to continue (default: the canned prompts)")
    parser.add_argument("--prompt-file", help="read the prompt from this file")
    parser.add_argument("--temperature", type=float, help="0 is greedy (default: canned runs 0, 0.7 and 1.0; "
                                                         "with a prompt, 0.7)")
    parser.add_argument("--top-k", type=int, help="sample among the k likeliest tokens")
    parser.add_argument("--top-p", type=float, help="sample among the likeliest tokens holding mass p")
    parser.add_argument("--max-new-tokens", type=int, default=200, help="stop after this many tokens (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt and temperature")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the decoding step (CUDA): about 20-30 s once, then about twice as fast "
                             "per token; worth it for long or many samples")


def sample_from_args(model: GPT, args: argparse.Namespace) -> None:
    prompt = open(args.prompt_file, encoding="utf-8").read() if args.prompt_file else args.prompt
    if args.temperature is not None:
        temperatures = [args.temperature]
    else:
        temperatures = [0.7] if prompt else list(CANNED_TEMPERATURES)
    run_prompts(model, [prompt] if prompt else None, temperatures, args.max_new_tokens, args.top_k, args.top_p,
                args.seed, args.num_samples, compile_step=args.compile)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cavegpt.infer.standalone",
                                     description="Generate text from an exported cavegpt model folder.")
    parser.add_argument("model", help="folder with model.safetensors and config.json (cavegpt export)")
    add_sampling_arguments(parser)
    args = parser.parse_args(argv)
    try:
        model, _ = load_model(args.model, args.device)
    except (ModelFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sample_from_args(model, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
