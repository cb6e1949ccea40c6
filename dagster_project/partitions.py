"""Partitions: shards of a fixed number of galaxies, created at ingest (dynamic partitions)."""

from __future__ import annotations

import dagster as dg

__all__ = ["SHARDS"]

SHARDS = dg.DynamicPartitionsDefinition(name="shards")
"""One partition per shard key ``<source>-<index:05d>``; ``astrovision ingest`` adds them."""
