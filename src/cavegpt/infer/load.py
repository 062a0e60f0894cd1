"""Loading a model for use: from a training checkpoint or an exported folder; writing the latter.

An exported folder holds ``model.safetensors`` (weights only, no code can ride along),
``config.json`` (``{"format": "cavegpt-export-v1", "model": {...}, "tokenizer": ..., ...}``); the
folders of ``cavegpt export --format hf`` load too (the same weights, transformers' config.json).
This module needs only torch and safetensors, so the standalone entry can use it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cavegpt.model.gpt import GPT, ModelConfig

EXPORT_FORMAT = "cavegpt-export-v1"
TOKENIZER = "gpt2 (tiktoken r50k_base), EOT 50256 starts every document"


class ModelFileError(ValueError):
    """A file or folder that does not hold a cavegpt model we can load; the message says what is off."""


def _model_config(data: dict, origin: str) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelFileError(f"{origin}: unknown model settings {', '.join(unknown)} (another program or version?)")
    return ModelConfig(**data)


def _build(config: ModelConfig, weights: dict[str, torch.Tensor], origin: str) -> GPT:
    model = GPT(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = [f"{k}: file {tuple(weights[k].shape)} vs config {tuple(expected[k].shape)}"
             for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                 f"wrong shapes {'; '.join(wrong[:5])}" if wrong else ""]
        raise ModelFileError(f"{origin}: the weights do not fit the model its config describes: "
                             + "; ".join(p for p in parts if p))
    model.load_state_dict(weights)
    return model


def model_source(path: str | Path) -> tuple[Path, Path | None]:
    """What a MODEL argument names: (the checkpoint or exported folder to load, the run folder it comes from).

    A run folder stands for its newest checkpoint; a checkpoint inside a run folder brings that folder
    along (its report, config and samples go into a model card); an exported folder has no run.
    """
    path = Path(path)
    if path.is_dir() and (path / "metrics.jsonl").exists():  # a run folder (an export has no metrics)
        from cavegpt.train.checkpoint import latest_checkpoint  # training checkpoints need the full package

        return latest_checkpoint(path)[0], path
    if path.is_file() and (path.parent / "metrics.jsonl").exists():
        return path, path.parent
    return path, None


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GPT, dict]:
    """(model in eval mode on ``device``, metadata) from an exported folder or a training checkpoint."""
    path = Path(path)
    if path.is_dir():
        config_path, weights_path = path / "config.json", path / "model.safetensors"
        if not (config_path.exists() and weights_path.exists()):
            raise ModelFileError(f"{path}: an exported model folder needs config.json and model.safetensors")
        meta = json.loads(config_path.read_text())
        if meta.get("model_type") == "cavegpt":  # a Hugging Face export (cavegpt export --format hf)
            meta = {"format": EXPORT_FORMAT, **meta.get("cavegpt", {}),
                    "model": {f.name: meta[f.name] for f in dataclasses.fields(ModelConfig) if f.name in meta}}
        if meta.get("format") != EXPORT_FORMAT:
            raise ModelFileError(f"{config_path}: not a cavegpt export (format {meta.get('format')!r}, "
                                 f"expected {EXPORT_FORMAT!r})")
        try:
            weights = load_file(weights_path)
        except Exception as e:  # safetensors raises its own error types for foreign or torn files
            raise ModelFileError(f"{weights_path}: not a readable safetensors file ({e})") from None
        model = _build(_model_config(meta["model"], str(config_path)), weights, str(path))
    else:
        from cavegpt.train.checkpoint import load_checkpoint  # training checkpoints need the full package

        state = load_checkpoint(path)
        meta = {"step": state.get("progress", {}).get("step"), "val_loss": state.get("progress", {}).get("val_loss")}
        model = _build(_model_config(state["config"]["model"], str(path)), state["model"], str(path))
    return inference_weights(model.to(device).eval()), meta


def inference_weights(model: GPT) -> GPT:
    """On CUDA, store the linear layers' weights in bf16, in place; elsewhere leave the model as it is.

    Inference runs under bf16 autocast, which would otherwise cast every fp32 matrix at every
    decoding step (0.3 ms of a 1.4 ms step on an H100); the cast is exact rounding either way, so
    the outputs do not change.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.is_cuda:
            module.weight.data = module.weight.data.bfloat16()
    return model


def export_model(checkpoint: str | Path, out: str | Path) -> Path:
    """Write ``model.safetensors`` + ``config.json`` for a checkpoint (or re-export a folder)."""
    model, meta = load_model(checkpoint)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    record = {"format": EXPORT_FORMAT, "model": dataclasses.asdict(model.config), "tokenizer": TOKENIZER,
              "step": meta.get("step"), "val_loss": meta.get("val_loss")}
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    return out
