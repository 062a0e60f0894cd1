"""``cavegpt export --format hf``: a folder that ``transformers`` loads with no cavegpt installed.

It holds ``config.json`` (with ``auto_map`` pointing at the two code files), ``configuration_cavegpt.py``
and ``modeling_cavegpt.py`` (copied from this package), ``model.safetensors`` (cavegpt's own
parameter names) and GPT-2's tokenizer made from the BPE ranks the package ships: ``tokenizer.json``
and its config, built by ``transformers``' tiktoken converter with tiktoken's own split pattern,
so that it gives the ids of tiktoken's ``r50k_base``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from importlib import resources
from pathlib import Path

from safetensors.torch import save_file

from cavegpt.data.tokenizer import GPT2_SPLIT_PATTERN, GPT2_VOCAB_SIZE
from cavegpt.infer.load import load_model

CODE_FILES = ("configuration_cavegpt.py", "modeling_cavegpt.py")
EOT_TEXT = "<|endoftext|>"


class HFExportError(RuntimeError):
    """The Hugging Face export cannot be written here (a missing optional package)."""


def _gpt2_tokenizer():
    try:
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter
    except ImportError:
        raise HFExportError('the Hugging Face export needs transformers: pip install "cavegpt[hf]"') from None
    ranks = resources.files("cavegpt.data") / "assets" / "r50k_base.tiktoken"
    with resources.as_file(ranks) as path:
        converted = TikTokenConverter(vocab_file=str(path), pattern=GPT2_SPLIT_PATTERN,
                                      extra_special_tokens=[EOT_TEXT]).converted()
    return PreTrainedTokenizerFast(tokenizer_object=converted, bos_token=EOT_TEXT, eos_token=EOT_TEXT,
                                   unk_token=EOT_TEXT, model_max_length=1024 ** 3, clean_up_tokenization_spaces=False)


def hf_config(model_config, meta: dict) -> dict:
    """config.json for ``transformers``: cavegpt's model settings, the auto classes and the token ids."""
    fields = dataclasses.asdict(model_config)
    # how cavegpt trains, not what the model computes
    for setting in ("attention", "fused_head", "fused_mlp", "fused_qkv_prep", "row_grads_by_token",
                    "low_precision_residual"):
        fields.pop(setting)
    return {"architectures": ["CavegptForCausalLM"], "model_type": "cavegpt",
            "auto_map": {"AutoConfig": "configuration_cavegpt.CavegptConfig",
                         "AutoModelForCausalLM": "modeling_cavegpt.CavegptForCausalLM"},
            **fields, "text_vocab_size": GPT2_VOCAB_SIZE, "bos_token_id": 50256, "eos_token_id": 50256,
            "tie_word_embeddings": False, "torch_dtype": "float32",
            "cavegpt": {"step": meta.get("step"), "val_loss": meta.get("val_loss")}}


def export_hf(model_path: str | Path, out: str | Path) -> Path:
    """Write the folder for ``model_path`` (a checkpoint or a cavegpt export) into ``out``."""
    tokenizer = _gpt2_tokenizer()  # first: a missing transformers is reported before anything is written
    model, meta = load_model(model_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_config(model.config, meta), indent=2) + "\n")
    code = resources.files("cavegpt.infer.hf")
    for name in CODE_FILES:
        with resources.as_file(code / name) as path:
            shutil.copyfile(path, out / name)
    tokenizer.save_pretrained(out)
    return out
