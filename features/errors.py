"""Errors raised for bad input (the CLI prints them as one line and exits 2)."""

from __future__ import annotations

__all__ = ["InputError", "OfflineError"]


class InputError(ValueError):
    """Input data that cannot be used: corrupt file, wrong keys or shapes, duplicate ids, bad rows.

    The message always names the file and, where it applies, the row.
    """


class OfflineError(InputError):
    """Something had to be downloaded and the network (or the remote service) is unreachable.

    The message says where to put the file by hand.
    """
