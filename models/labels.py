"""Turn a label column of the ``galaxies`` table into class indices.

The target can be the catalogue's own ``label`` (with ``label_name``) or any key of ``extra_json``, the
JSON of extra catalogue columns (``{"ring": 1}`` for the GZ DECaLS ring sample). Values are integers
(or strings, which become classes in sorted order); null or missing means "unlabelled" and the galaxy
is left out of training. NaN, non-integral numbers and booleans mixed with numbers are errors naming
the galaxy and its row, never silently dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import LabelError, TooFewClassesError

__all__ = ["Labels", "resolve_labels"]


@dataclass(frozen=True)
class Labels:
    """Labels of the labelled galaxies of one column.

    Attributes
    ----------
    column : str
        The label column (``"label"`` or an ``extra_json`` key).
    galaxy_ids : list of str
        The labelled galaxies, in input order.
    values : numpy.ndarray of int64
        The stored label value of each labelled galaxy (the class id users see).
    classes : tuple of int
        The distinct label values, sorted; a model's output ``k`` is class ``classes[k]``.
    names : tuple of str
        A name per class.
    n_unlabelled : int
        Galaxies with no label (left out).
    """

    column: str
    galaxy_ids: list[str]
    values: np.ndarray
    classes: tuple[int, ...]
    names: tuple[str, ...]
    n_unlabelled: int

    @property
    def index(self) -> np.ndarray:
        """Class index ``0..K-1`` of each labelled galaxy (position of its value in :attr:`classes`)."""
        return np.searchsorted(np.asarray(self.classes), self.values)

    @property
    def name_of(self) -> dict[int, str]:
        """Class value -> name."""
        return dict(zip(self.classes, self.names))

    def as_json(self) -> str:
        """``[{"label": value, "name": name}, ...]`` in class-index order (stored in the registry)."""
        return json.dumps([{"label": int(c), "name": n} for c, n in zip(self.classes, self.names)])


def _extra_value(raw: str | None, column: str, gid: str, row: int) -> Any:
    if raw is None or raw == "":
        return None
    try:
        extra = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise LabelError(f"galaxies row {row} ({gid}): extra_json is not valid JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise LabelError(f"galaxies row {row} ({gid}): extra_json is not a JSON object")
    return extra.get(column)


def _class_value(v: Any, where: str) -> int:
    """A numeric label as an int class value (negative: unlabelled); ``LabelError`` naming ``where`` otherwise."""
    if isinstance(v, bool):
        v = int(v)
    try:
        fv = float(v)
    except (TypeError, ValueError):
        raise LabelError(f"{where} has value {v!r}, not a number") from None
    if math.isnan(fv):
        raise LabelError(f"{where} is NaN; store null for an unlabelled galaxy")
    if not fv.is_integer() or math.isinf(fv):
        raise LabelError(f"{where} has non-integer value {v!r}")
    return int(fv)


def resolve_labels(
    galaxy_ids: Sequence[str],
    *,
    column: str = "label",
    label: Sequence[Any] | None = None,
    label_name: Sequence[str | None] | None = None,
    extra_json: Sequence[str | None] | None = None,
    names: dict[int, str] | None = None,
    table: str = "galaxies",
) -> Labels:
    """Resolve one label column into class values and names.

    Parameters
    ----------
    galaxy_ids : sequence of str
    column : str
        ``"label"`` for the catalogue label, anything else is looked up in ``extra_json``.
    label, label_name : sequences, optional
        The ``label`` and ``label_name`` columns (needed when ``column == "label"``). Negative labels
        (``-1``) count as unlabelled, like nulls.
    extra_json : sequence of str, optional
        The ``extra_json`` column (needed for any other column).
    names : dict, optional
        Class names to use instead of the stored ones (e.g. ``{0: "no ring", 1: "ring"}``).
    table : str
        Name used in error messages.

    Returns
    -------
    Labels

    Raises
    ------
    LabelError
        On NaN or non-integral values (naming the galaxy and row), or when no galaxy carries the column.
    TooFewClassesError
        When fewer than two classes remain (a :class:`LabelError`).
    """
    n = len(galaxy_ids)
    raw: list[Any]
    stored_names: list[str | None]
    if column == "label":
        if label is None:
            raise LabelError(f"{table}: no 'label' column given")
        raw = list(label)
        stored_names = list(label_name) if label_name is not None else [None] * n
    else:
        if extra_json is None:
            raise LabelError(f"{table}: no extra_json column to read label column {column!r} from")
        raw = [_extra_value(e, column, g, i) for i, (g, e) in enumerate(zip(galaxy_ids, extra_json))]
        stored_names = [None] * n

    is_str = [isinstance(v, str) for v in raw if v is not None]
    if any(is_str) and not all(is_str):
        row = next(i for i, v in enumerate(raw) if v is not None and not isinstance(v, str))
        raise LabelError(
            f"{table} row {row} ({galaxy_ids[row]}): label column {column!r} mixes text and numbers"
        )
    text_classes = sorted({v for v in raw if isinstance(v, str)}) if any(is_str) else []

    ids: list[str] = []
    values: list[int] = []
    found_names: dict[int, str] = {}
    n_unlabelled = 0
    for row, (gid, v, nm) in enumerate(zip(galaxy_ids, raw, stored_names)):
        if v is None:
            n_unlabelled += 1
            continue
        if isinstance(v, str):
            value = text_classes.index(v)
            found_names.setdefault(value, v)
        else:
            value = _class_value(v, f"{table} row {row} ({gid}): label column {column!r}")
            if value < 0:
                n_unlabelled += 1
                continue
            if nm:
                found_names.setdefault(value, str(nm))
        ids.append(gid)
        values.append(value)

    if not ids:
        raise LabelError(f"{table}: no galaxy has a value in label column {column!r} ({n} galaxies read)")
    classes = tuple(sorted(set(values)))
    if len(classes) < 2:
        raise TooFewClassesError(
            f"{table}: label column {column!r} has a single class ({classes[0]}) among {len(ids)} "
            "labelled galaxies; a classifier needs at least two"
        )
    names = names or {}
    class_names = tuple(names.get(c) or found_names.get(c) or str(c) for c in classes)
    return Labels(
        column=column,
        galaxy_ids=ids,
        values=np.asarray(values, dtype=np.int64),
        classes=classes,
        names=class_names,
        n_unlabelled=n_unlabelled,
    )
