"""Tables of the morphometrics stage (registered on import)."""
