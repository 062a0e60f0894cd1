"""The configuration of a cavegpt model for Hugging Face ``transformers`` (written by ``cavegpt export --format hf``).

Its fields are cavegpt's ``ModelConfig`` (``cavegpt.model.gpt``); ``attribute_map`` gives them the
names other tools look for (``hidden_size``, ``num_hidden_layers``, ...).
"""

from transformers import PretrainedConfig

EOT_TOKEN = 50256  # GPT-2's <|endoftext|>: it opens every document


class CavegptConfig(PretrainedConfig):
    model_type = "cavegpt"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
                     "max_position_embeddings": "max_seq_len"}

    def __init__(self, vocab_size: int = 50304, n_layer: int = 12, n_head: int = 6, d_model: int = 768,
                 n_value_embeds: int = 3, gate_channels: int = 12, backout_layer: int = 8, logit_softcap: float = 30.0,
                 window: int = 1792, max_seq_len: int = 65536, bigram_vocab: int = 0, text_vocab_size: int = 50257,
                 no_attention_layers: tuple[int, ...] = (), short_window_layers: tuple[int, ...] = (),
                 no_mlp_layers: tuple[int, ...] = (), **kwargs):
        self.vocab_size, self.n_layer, self.n_head, self.d_model = vocab_size, n_layer, n_head, d_model
        self.n_value_embeds, self.gate_channels, self.backout_layer = n_value_embeds, gate_channels, backout_layer
        self.logit_softcap, self.window, self.max_seq_len, self.bigram_vocab = logit_softcap, window, max_seq_len, bigram_vocab
        self.no_attention_layers, self.short_window_layers = tuple(no_attention_layers), tuple(short_window_layers)
        self.no_mlp_layers = tuple(no_mlp_layers)
        self.text_vocab_size = text_vocab_size  # ids past it pad the vocabulary: their logits are -inf
        kwargs.setdefault("bos_token_id", EOT_TOKEN)
        kwargs.setdefault("eos_token_id", EOT_TOKEN)
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)
