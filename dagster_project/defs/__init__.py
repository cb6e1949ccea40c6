"""Definitions grouped by domain: each module that exposes ``defs = dg.Definitions(...)`` is loaded."""
