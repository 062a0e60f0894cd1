"""cavegpt: train GPT-2 124M to 3.28 FineWeb val loss on one GPU, then use it."""

__version__ = "0.1.0"
