"""Token shards: the format, streaming loaders and synthetic data."""

from cavegpt.data.loader import DataConfig, TokenStream, find_shards, validation_stream
from cavegpt.data.shards import ShardError, read_header, read_tokens, write_shard

__all__ = ["DataConfig", "TokenStream", "find_shards", "validation_stream", "ShardError", "read_header",
           "read_tokens", "write_shard"]
