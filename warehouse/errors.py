"""Errors the warehouse raises for the user to read (the CLI prints them as one line, exit 2)."""

from __future__ import annotations

__all__ = ["SQLError", "WarehouseError", "is_commit_conflict"]


class WarehouseError(ValueError):
    """A request the warehouse cannot serve: unknown table, bad rows, missing galaxy."""


class SQLError(WarehouseError):
    """A user query that failed: syntax, unknown column, write attempt, timeout."""


def is_commit_conflict(exc: BaseException) -> bool:
    """Whether a Lance error is a commit conflict with a concurrent writer (Lance says "conflict" / "Retryable")."""
    text = str(exc)
    return "onflict" in text or "Retryable" in text
