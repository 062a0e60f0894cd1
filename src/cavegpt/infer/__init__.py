"""Using a trained model: KV-cache generation, canned prompts, evaluation, export."""
