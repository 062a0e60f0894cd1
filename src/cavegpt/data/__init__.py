"""Token shards: the format (shards), loading (loader), FineWeb download (fineweb), your own text
(prepare), verification (check), synthetic shards, and the GPT-2 tokenizer (tokenizer).

Import the modules themselves; this package stays empty so that the tokenizer can be used without
numpy (the standalone inference entry needs only torch, tiktoken and safetensors).
"""
