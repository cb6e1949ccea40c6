"""Training domain: ``splits``, the four classifiers and ``predictions`` (``defs`` in :mod:`.assets`)."""
