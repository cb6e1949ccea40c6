"""Photometric catalogue files (CSV, FITS, Parquet) read into the canonical columns and validated.

A file may use other column names through a mapping (:func:`features.photometry.columns.resolve_mapping`).
Validation either raises :class:`features.errors.InputError` naming the file, the column and the row,
or returns a :class:`Catalogue` in which every value is a number or NaN: SDSS sentinels (-9999) become
NaN, missing magnitudes stay NaN and are flagged later by the quality step, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.errors import InputError
from features.photometry.columns import CANONICAL, INT_COLUMNS, REQUIRED, SENTINEL_BELOW, resolve_mapping

__all__ = ["Catalogue", "read_catalogue", "read_table", "validate_columns"]

_CSV = (".csv", ".csv.gz", ".txt")
_PARQUET = (".parquet", ".pq")
_FITS = (".fits", ".fit", ".fits.gz", ".fit.gz", ".fts")


@dataclass
class Catalogue:
    """A validated photometric catalogue in canonical columns.

    Attributes
    ----------
    name : str
        Where it came from (file name or service), used in the ``source`` column of the results.
    columns : dict of str to numpy.ndarray
        Every canonical column: ``objid`` as int64, all others float64 (``type`` and ``clean`` too,
        so that "unknown" can be NaN).
    absent : tuple of str
        Optional canonical columns the input did not have (filled with NaN), so that a missing column
        is named rather than silently empty.
    """

    name: str
    columns: dict[str, np.ndarray]
    absent: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.columns["objid"])

    def take(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``index`` of every column; ``-1`` gives NaN (and objid ``-1``: callers mask it)."""
        index = np.asarray(index, dtype=np.int64)
        valid = index >= 0
        out: dict[str, np.ndarray] = {}
        safe = np.where(valid, index, 0)
        for name, col in self.columns.items():
            if len(col) == 0:
                taken = np.full(len(index), np.nan if col.dtype.kind == "f" else -1, dtype=col.dtype)
            else:
                taken = col[safe].copy()
            if taken.dtype.kind == "f":
                taken[~valid] = np.nan
            else:
                taken[~valid] = -1
            out[name] = taken
        return out


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (*_CSV, *_PARQUET, *_FITS):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CSV, Parquet or FITS (first table HDU) file into ``{column: numpy array}``.

    Nulls in numeric columns become NaN; non-numeric columns come back as object arrays (validation
    then names the column and row that is not a number).

    Raises
    ------
    InputError
        If the file is missing, has an unknown extension or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: photometry catalogue not found")
    suffix = _suffix(path)
    try:
        if suffix in _CSV or suffix in _PARQUET:
            import pyarrow.csv as pacsv
            import pyarrow.parquet as pq

            table = pacsv.read_csv(path) if suffix in _CSV else pq.read_table(path)
            out = {}
            for name in table.column_names:
                col = table.column(name)
                out[name] = col.to_numpy(zero_copy_only=False)
            return out
        if suffix in _FITS:
            from astropy.table import Table

            tab = Table.read(path, format="fits")
            out = {}
            for name in tab.colnames:
                col = tab[name]
                mask = np.asarray(getattr(col, "mask", False))
                if mask.any() and col.dtype.kind in "fiub":
                    data = np.where(mask, np.nan, np.asarray(col.filled(0), dtype=np.float64))
                elif mask.any():
                    data = np.where(mask, None, np.asarray(col.filled(""), dtype=object))
                else:
                    data = np.asarray(col)
                if data.ndim != 1:
                    continue  # vector columns (e.g. per-band arrays) are not canonical; map them first
                if data.dtype.kind in "SU":
                    data = data.astype(str).astype(object)
                out[name] = data
            return out
    except (OSError, ValueError, TypeError) as exc:  # pyarrow.ArrowInvalid subclasses ValueError
        raise InputError(f"{path}: cannot read photometry catalogue: {exc}") from exc
    raise InputError(f"{path}: unknown catalogue format {suffix!r}; use CSV, Parquet or FITS")


def _as_float(name: str, values: np.ndarray, where: str) -> np.ndarray:
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "nan", "null", "none")):
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise InputError(f"{where}: column {name!r} row {i}: {v!r} is not a number") from None
    return out


def validate_columns(raw: Mapping[str, np.ndarray], where: str, mapping: Mapping[str, str] | None = None) -> Catalogue:
    """Turn raw columns into a validated :class:`Catalogue`.

    Parameters
    ----------
    raw : mapping
        ``{file column: values}``.
    where : str
        The file (or service) name used in messages and in :attr:`Catalogue.name`.
    mapping : mapping, optional
        ``{file column: canonical column}``.

    Raises
    ------
    InputError
        Missing required columns; no rows; a non-numeric value; a missing or non-integer ``objid``;
        a duplicate ``objid`` (both rows named); ``ra``/``dec`` missing or out of range.
    """
    names = list(raw)
    try:
        source_of = resolve_mapping(names, mapping)
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from None
    missing = [c for c in REQUIRED if c not in source_of]
    if missing:
        raise InputError(
            f"{where}: missing required column(s) {missing}; the file has {names}. "
            "Rename them or pass a column mapping (file name -> canonical name)."
        )
    n = len(raw[source_of["objid"]])
    if n == 0:
        raise InputError(f"{where}: the catalogue has no rows")
    columns: dict[str, np.ndarray] = {}
    absent = []
    for name in CANONICAL:
        if name not in source_of:
            absent.append(name)
            columns[name] = np.full(n, np.nan)
            continue
        values = np.asarray(raw[source_of[name]])
        if len(values) != n:
            raise InputError(f"{where}: column {source_of[name]!r} has {len(values)} rows, expected {n}")
        columns[name] = _as_float(source_of[name], values, where)

    objid = columns["objid"]
    bad = np.flatnonzero(~np.isfinite(objid) | (objid != np.round(objid)))
    if bad.size:
        i = int(bad[0])
        raise InputError(f"{where}: row {i}: objid {raw[source_of['objid']][i]!r} is missing or not an integer")
    ids = np.asarray(raw[source_of["objid"]])
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else objid.astype(np.int64)
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        a, b = int(order[dup[0]]), int(order[dup[0] + 1])
        raise InputError(f"{where}: duplicate objid {int(ids[a])} in rows {a} and {b}")
    columns["objid"] = ids

    ra, dec = columns["ra"], columns["dec"]
    bad = np.flatnonzero(~np.isfinite(ra) | ~np.isfinite(dec) | (ra < 0) | (ra >= 360) | (np.abs(dec) > 90))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{where}: row {i} (objid {int(ids[i])}): position ra={ra[i]!r}, dec={dec[i]!r} is missing or out of range"
            f" ({bad.size} such row(s))"
        )
    for name in CANONICAL:
        if name in ("objid", "ra", "dec"):
            continue
        col = columns[name]
        col[col <= SENTINEL_BELOW] = np.nan
        if name in INT_COLUMNS:
            col[~np.isfinite(col)] = np.nan
    return Catalogue(name=where, columns=columns, absent=tuple(absent))


def read_catalogue(path: str | Path, mapping: Mapping[str, str] | None = None) -> Catalogue:
    """Read and validate a photometric catalogue file.

    Parameters
    ----------
    path : path
        CSV, Parquet or FITS file with the canonical columns (see :mod:`features.photometry.columns`),
        or other names plus ``mapping``.
    mapping : mapping, optional
        ``{file column: canonical column}``.

    Returns
    -------
    Catalogue
        ``name`` is the file name (used as ``source = "catalogue:<name>"``).
    """
    path = Path(path)
    return validate_columns(read_table(path), where=str(path), mapping=mapping)
