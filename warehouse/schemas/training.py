"""Tables of the training stage (registered on import)."""
