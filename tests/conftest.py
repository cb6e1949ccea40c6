"""Shared fixtures. Domain-specific fixtures live in the test module that uses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = PROJECT_ROOT.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """``../shared`` (read-only real data); tests that need it are skipped when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED / "data"


@pytest.fixture
def warehouse(tmp_path: Path):
    """A fresh, empty warehouse in a temporary directory."""
    from warehouse import Warehouse

    return Warehouse.open(tmp_path / "wh")
