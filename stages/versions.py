"""The model registry in the warehouse: one ``models`` row per training run.

A version is ``1 + the largest version`` of that model name so far. Each row records the config, seed,
metrics, artefact directory (``<root>/models/<name>/v<version>/``), the weights origin, and the Lance
version of every table the run read, so :func:`training_set` can read the exact split back with Lance
time travel even after the tables moved on. (Two runs of the same model finishing at the same instant
could take the same version; the later upsert would win. Dagster runs one materialization of an asset
at a time, and the CLI is interactive, so this is not guarded further.)

Functions take a :class:`warehouse.Warehouse`; of the warehouse package only :func:`warehouse.sqltext.quote`
is imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from models.errors import MissingInputError
from warehouse.sqltext import quote

__all__ = ["artefact_dir", "get_model", "list_models", "next_version", "record_model", "training_set"]


def next_version(wh: Any, name: str) -> int:
    """The version the next run of ``name`` gets (1 for the first)."""
    if not wh.exists("models"):
        return 1
    rows = wh.read("models", columns=["version"], where=f"name = {quote(name)}")
    versions = rows.column("version").to_pylist()
    return int(max(versions)) + 1 if versions else 1


def artefact_dir(wh: Any, name: str, version: int) -> Path:
    """``<root>/models/<name>/v<version>``."""
    return Path(wh.models_dir) / name / f"v{version}"


def record_model(wh: Any, row: dict[str, Any], *, run_id: str | None = None) -> int:
    """Upsert one registry row (see ``warehouse.schemas.training.MODELS``); returns the table version."""
    return wh.upsert("models", [row], run_id=run_id)


def list_models(wh: Any) -> list[dict[str, Any]]:
    """Every registry row, sorted by name then version (empty when nothing was trained)."""
    if not wh.exists("models"):
        return []
    rows = wh.read("models").to_pylist()
    return sorted(rows, key=lambda r: (r["name"], r["version"]))


def get_model(wh: Any, name: str, version: int | None = None) -> dict[str, Any]:
    """One registry row; the latest version of ``name`` when ``version`` is None.

    Raises
    ------
    MissingInputError
        No such model or version.
    """
    rows = [r for r in list_models(wh) if r["name"] == name]
    if not rows:
        raise MissingInputError(f"no trained model {name!r} in the registry of {wh.root}")
    if version is None:
        return rows[-1]
    for r in rows:
        if r["version"] == version:
            return r
    raise MissingInputError(f"model {name!r} has no version {version} (versions: {[r['version'] for r in rows]})")


def training_set(wh: Any, name: str, version: int) -> pa.Table:
    """The split rows a model version was trained and tested on, read at the recorded table version."""
    row = get_model(wh, name, version)
    versions = json.loads(row["table_versions_json"])
    if "splits" not in versions:
        raise MissingInputError(f"model {name} v{version} recorded no splits table version")
    return wh.read("splits", version=int(versions["splits"]), where=f"split_name = {quote(row['split_name'])}")
