"""The faces of AstroVision: the ``astrovision`` CLI (and later the HTTP API)."""
