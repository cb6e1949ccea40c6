"""Tables of the photometry stage (registered on import)."""
