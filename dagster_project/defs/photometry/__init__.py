"""Photometry assets: ``photometry`` (per shard)."""
