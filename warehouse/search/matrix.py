"""The vectors of one embeddings table version in memory: L2-normalised, with ids and Lance row ids.

Every search route scores exact distances on this matrix (the ANN routes re-rank their candidates on
it). :func:`load_matrix` reads it once per table version; a version with the same fragments (an index
built or optimised) reuses the previous matrix, and one that only appended fragments reads just those.
The matrix is cached by its owner, :class:`warehouse.session.ReadSession` (an LRU bounded in bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.errors import WarehouseError

__all__ = ["Matrix", "as_matrix", "cosine_topk", "dim_of", "load_matrix"]

_DICT_LOOKUP_MAX = 50_000
"""Up to this many ids are turned into positions through the id -> position dict, more with one ``is_in``."""


def dim_of(ds: Any) -> int:
    """The width of a dataset's ``vector`` column."""
    return int(ds.schema.field("vector").type.list_size)


def as_matrix(col: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A fixed-size-list column as a float32 ``(n, dim)`` matrix."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(arr), dim)


def cosine_topk(unit: np.ndarray, qn: np.ndarray, k: int,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine distances of the k nearest rows of L2-normalised ``unit`` to unit ``qn`` (exact).

    ``valid``: rows that have a direction (zero vectors are never neighbours).
    """
    dist = (1.0 - unit @ qn).astype(np.float32, copy=False)
    if valid is not None and not valid.all():
        dist = np.where(valid, dist, np.float32(np.inf))
    k = min(k, len(dist))
    if k == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    idx = np.argpartition(dist, k - 1)[:k] if k < len(dist) else np.arange(len(dist))
    idx = idx[np.lexsort((idx, dist[idx]))]
    return idx, dist[idx]


def fragment_key(ds: Any) -> tuple:
    """What the rows of a dataset version are: its fragments' ids, data files, sizes and deletions."""
    return tuple((f.fragment_id, f.metadata.physical_rows, repr(f.metadata.deletion_file),
                  tuple(d.path for d in f.metadata.files)) for f in ds.get_fragments())


@dataclass
class Matrix:
    """The vectors of one table version, L2-normalised, with their ids and Lance row ids (for exact search)."""

    version: int
    fragments: tuple
    ids: pa.Array
    rowids: np.ndarray  # ascending: Lance row ids (fragment << 32 | offset) of each position
    unit: np.ndarray
    valid: np.ndarray
    _rows: dict[str, int] | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        """Memory held (vectors, row ids, ids; the id dict estimated when built)."""
        extra = 0 if self._rows is None else 100 * len(self._rows)
        return int(self.unit.nbytes + self.rowids.nbytes + self.valid.nbytes + self.ids.nbytes + extra)

    @property
    def rows(self) -> dict[str, int]:
        """``galaxy_id`` -> position, built on first use."""
        if self._rows is None:
            self._rows = {g: i for i, g in enumerate(self.ids.to_pylist())}
        return self._rows

    def positions(self, ids: pa.Array) -> np.ndarray:
        """Ascending positions of the given ids (ids not in the table are skipped)."""
        if len(ids) <= _DICT_LOOKUP_MAX:
            rows = self.rows
            pos = np.fromiter((rows[g] for g in ids.to_pylist() if g in rows), dtype=np.int64)
            return np.unique(pos)
        return np.flatnonzero(pc.is_in(self.ids, value_set=ids).to_numpy(zero_copy_only=False))

    def positions_of_rowids(self, rowids: np.ndarray) -> np.ndarray:
        """Positions of Lance row ids of this version (every one is present: same version)."""
        pos = np.searchsorted(self.rowids, rowids)
        pos = np.minimum(pos, len(self.rowids) - 1)
        if not np.array_equal(self.rowids[pos], rowids):
            raise WarehouseError("ANN returned row ids outside the cached table version; retry the query")
        return pos

    def vector(self, galaxy_id: str) -> np.ndarray | None:
        """The stored (normalised) vector of one id, None when absent."""
        i = self.rows.get(galaxy_id)
        return None if i is None else self.unit[i]


def _read_part(ds: Any, dim: int, fragments: list | None = None) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    kwargs = {} if fragments is None else {"fragments": fragments}
    data = ds.scanner(columns=["galaxy_id", "vector"], with_row_id=True, **kwargs).to_table()
    ids = data.column("galaxy_id").combine_chunks()
    rowids = data.column("_rowid").to_numpy().astype(np.int64)
    vectors = as_matrix(data.column("vector"), dim)
    norms = np.linalg.norm(vectors, axis=1)
    valid = np.isfinite(norms) & (norms > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(valid[:, None], vectors / np.where(valid, norms, 1.0)[:, None], 0.0).astype(np.float32)
    return ids, rowids, unit, valid


def load_matrix(ds: Any, previous: Matrix | None = None) -> Matrix:
    """All vectors of a dataset version, normalised; reusing ``previous`` (the same table) where it can.

    A version with the same fragments as ``previous`` reuses it (returned as a new object sharing its
    arrays); one that only appended fragments reads just those.
    """
    version = int(ds.version)
    if previous is not None and previous.version == version:
        return previous
    key = fragment_key(ds)
    dim = dim_of(ds)
    if previous is not None and previous.fragments == key:
        return Matrix(version, key, previous.ids, previous.rowids, previous.unit, previous.valid, previous._rows)
    if previous is not None and previous.fragments and key[:len(previous.fragments)] == previous.fragments:
        old = {f[0] for f in previous.fragments}
        ids, rowids, unit, valid = _read_part(ds, dim, [f for f in ds.get_fragments() if f.fragment_id not in old])
        ids = pa.concat_arrays([previous.ids, ids])
        rowids = np.concatenate([previous.rowids, rowids])
        unit = np.concatenate([previous.unit, unit])
        valid = np.concatenate([previous.valid, valid])
    else:
        ids, rowids, unit, valid = _read_part(ds, dim)
    if len(rowids) > 1 and not np.all(rowids[1:] > rowids[:-1]):
        order = np.argsort(rowids, kind="stable")
        ids, rowids, unit, valid = ids.take(pa.array(order)), rowids[order], unit[order], valid[order]
    return Matrix(version, key, ids, rowids, unit, valid)
