"""Measuring and reporting runs: bench (tokens/s, MFU, memory)."""
