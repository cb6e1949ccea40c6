"""Tables of the embeddings stage (registered on import)."""
