"""cavegpt models for Hugging Face ``transformers`` (``pip install "cavegpt[hf]"``).

``configuration_cavegpt.py`` and ``modeling_cavegpt.py`` are copied as they are into every folder
that ``cavegpt export --format hf`` writes, and ``transformers`` loads them from there with
``trust_remote_code=True``: they must not import cavegpt. ``export.py`` writes such a folder.
"""
