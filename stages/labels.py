"""Labels from people: validated, appended to the ``labels`` table, read back newest-first.

Every act of labelling is a new row (a fresh ``label_id``); nothing is updated or deleted, so a label
storm from many processes loses nothing (each write is its own Lance commit, retried on conflict). The
view ``latest_labels`` keeps the newest per (galaxy, name, who). The catalogue's own labels
(``galaxies.label``) are a different table and never touched.

A batch is all or nothing: an unknown galaxy, an empty or odd name, a non-finite value or an unknown
source refuses the whole batch in one line, naming the offenders; nothing is written.
"""

from __future__ import annotations

import csv
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from features.errors import InputError
from warehouse import Warehouse, quote
from warehouse.schemas.anomaly import LABEL_SOURCES

__all__ = ["NAME_PATTERN", "LabelIn", "add_labels", "label_names", "label_value", "latest_labels", "read_label_csv"]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_. -]{0,63}$")
"""A label name (and a ``who``): 1-64 letters, digits, ``_ . -`` and spaces, starting with a letter or digit."""

_WORDS = {"yes": 1.0, "true": 1.0, "interesting": 1.0, "no": 0.0, "false": 0.0, "not": 0.0}


@dataclass(frozen=True)
class LabelIn:
    """One label to store."""

    galaxy_id: str
    name: str
    value: float = 1.0
    who: str = "anonymous"


def label_value(text: str | float | int) -> float:
    """A label value from a number or a word (``yes``/``true`` 1, ``no``/``false``/``not`` 0)."""
    if isinstance(text, int | float):
        return float(text)
    word = str(text).strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    try:
        return float(word)
    except ValueError:
        raise InputError(f"label value {text!r} is neither a number nor yes/no") from None


def _check(labels: Sequence[LabelIn], source: str) -> None:
    if source not in LABEL_SOURCES:
        raise InputError(f"unknown label source {source!r}; known: {', '.join(LABEL_SOURCES)}")
    if not labels:
        raise InputError("no labels given")
    for lab in labels:
        if not NAME_PATTERN.match(lab.name or ""):
            raise InputError(f"bad label name {lab.name!r}: 1-64 letters, digits, '_', '.', '-' or spaces")
        if not NAME_PATTERN.match(lab.who or ""):
            raise InputError(f"bad labeller name {lab.who!r}: 1-64 letters, digits, '_', '.', '-' or spaces")
        if not math.isfinite(lab.value):
            raise InputError(f"label value of {lab.galaxy_id!r} is not a finite number")


def add_labels(wh: Warehouse, labels: Sequence[LabelIn], source: str, *, run_id: str | None = None) -> list[str]:
    """Append ``labels`` (all or nothing); returns their new ``label_id`` values.

    Raises
    ------
    features.errors.InputError
        An unknown galaxy (named, up to five), a bad name, who, value or source; nothing is written.
    """
    _check(labels, source)
    ids = sorted({lab.galaxy_id for lab in labels})
    known = set(wh.has_ids("galaxies", ids))
    unknown = [g for g in ids if g not in known]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(f"no galaxy {', '.join(map(repr, unknown[:5]))}{more}; nothing was labelled")
    now = datetime.now(UTC)
    label_ids = [uuid.uuid4().hex for _ in labels]
    rows = pa.table({
        "label_id": label_ids, "galaxy_id": [lab.galaxy_id for lab in labels], "name": [lab.name for lab in labels],
        "value": [float(lab.value) for lab in labels], "who": [lab.who for lab in labels],
        "labelled_at": pa.array([now] * len(labels), pa.timestamp("us", tz="UTC")), "source": [source] * len(labels),
    })
    wh.upsert("labels", rows, run_id=run_id)
    return label_ids


def read_label_csv(path: str | Path, *, name: str | None = None, who: str = "anonymous") -> list[LabelIn]:
    """Labels from a CSV with a ``galaxy_id`` column and optional ``name``, ``value``, ``who`` columns.

    ``name`` (the option) is used where the file has no ``name`` column; a missing value is 1.
    Errors name the file and the row.
    """
    path = Path(path)
    out: list[LabelIn] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "galaxy_id" not in reader.fieldnames:
            raise InputError(f"{path.name}: needs a galaxy_id column (has {reader.fieldnames or 'none'})")
        if "name" not in reader.fieldnames and not name:
            raise InputError(f"{path.name}: no name column; give the label name (--name)")
        for i, row in enumerate(reader, start=2):
            gid = (row.get("galaxy_id") or "").strip()
            if not gid:
                raise InputError(f"{path.name}, row {i}: empty galaxy_id")
            try:
                value = label_value(row.get("value") or 1.0)
            except InputError as exc:
                raise InputError(f"{path.name}, row {i}: {exc}") from None
            out.append(LabelIn(gid, (row.get("name") or name or "").strip(), value,
                               (row.get("who") or who).strip()))
    return out


def latest_labels(wh: Warehouse, name: str, who: str | None = None) -> dict[str, float]:
    """The newest value per galaxy of label ``name`` (by ``who``, or by anyone: the newest of all)."""
    if not wh.exists("labels"):
        return {}
    cond = f"name = {quote(name)}" + (f" AND who = {quote(who)}" if who else "")
    q = (f"SELECT galaxy_id, arg_max(value, labelled_at) AS value FROM latest_labels WHERE {cond} "
         f"GROUP BY galaxy_id ORDER BY galaxy_id")
    t = wh.sql_result(q, limit=None).table
    return dict(zip(t.column("galaxy_id").to_pylist(), t.column("value").to_pylist(), strict=True))


def label_names(wh: Warehouse) -> Iterable[str]:
    """The label names in use."""
    if not wh.exists("labels"):
        return []
    return wh.sql_result("SELECT DISTINCT name FROM labels ORDER BY name", limit=None).table.column("name").to_pylist()
