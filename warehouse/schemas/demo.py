"""Tables of the demo stage (registered on import)."""
