"""Segmentation domain: ``pseudo_labels``, ``unet`` and ``masks`` (``defs`` in :mod:`.assets`)."""
