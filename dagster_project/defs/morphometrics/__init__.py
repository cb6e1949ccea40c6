"""Morphometrics domain: the per-shard ``morphometrics`` asset (``defs`` lives in ``assets.py``)."""
