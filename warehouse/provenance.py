"""Provenance stamped on every stored row: code version, run id, write time."""

from __future__ import annotations

import functools
import subprocess
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

__all__ = ["code_version", "new_run_id", "utc_now"]


@functools.cache
def code_version() -> str:
    """The package version plus the git commit when run from a checkout (``0.1.0+g1a2b3c4``).

    A checkout with uncommitted changes gets a ``.dirty`` suffix so rows written by unreviewed code can be
    told apart.
    """
    try:
        version = metadata.version("astrovision")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    repo = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    if not sha:
        return version
    return f"{version}+g{sha}{'.dirty' if dirty else ''}"


def new_run_id() -> str:
    """A fresh run id for writes made outside a Dagster run (``manual-<uuid4 hex>``)."""
    return f"manual-{uuid.uuid4().hex[:12]}"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
