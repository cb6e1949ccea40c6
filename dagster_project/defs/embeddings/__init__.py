"""Embeddings domain: the per-shard ``embeddings`` asset and the ``embedding_index`` asset."""
