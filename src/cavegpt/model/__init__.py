"""The GPT and its attention masks."""

from cavegpt.model.gpt import GPT, ModelConfig

__all__ = ["GPT", "ModelConfig"]
