"""One registry of table schemas.

Every table the warehouse stores is declared here once, with an explicit pyarrow schema and its key
columns; nothing is inferred from data. Later stages add their tables in a module of this package
(``morphometrics.py``, ``photometry.py``, ...), each calling :func:`register`.

Every table also carries the provenance columns of :data:`PROVENANCE_FIELDS` (code version, run id,
write time); :meth:`warehouse.Warehouse.upsert` stamps them, so a table spec lists only its own
columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

__all__ = [
    "PROVENANCE_COLUMNS",
    "PROVENANCE_FIELDS",
    "TableSpec",
    "get",
    "register",
    "registered",
    "rows_with_defaults",
]

PROVENANCE_FIELDS: list[pa.Field] = [
    pa.field("code_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("written_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
PROVENANCE_COLUMNS: tuple[str, ...] = tuple(f.name for f in PROVENANCE_FIELDS)
"""Names of the provenance columns, for code that strips or skips them."""


@dataclass(frozen=True)
class TableSpec:
    """A warehouse table: name, key columns and schema (without provenance columns).

    Parameters
    ----------
    name : str
        Table name; the Lance dataset is ``<root>/lance/<name>.lance`` and the SQL view has this name.
    keys : tuple of str
        Columns that identify a row; upserts merge on them.
    columns : pyarrow.Schema
        The table's own columns. Provenance columns are appended by :attr:`schema`.
    description : str
        One line for ``astrovision tables`` and the docs.
    """

    name: str
    keys: tuple[str, ...]
    columns: pa.Schema
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> pa.Schema:
        """The full stored schema: own columns then provenance columns."""
        fields = list(self.columns) + [f for f in PROVENANCE_FIELDS if f.name not in self.columns.names]
        return pa.schema(fields, metadata={k.encode(): v.encode() for k, v in self.metadata.items()} or None)


_REGISTRY: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    """Add a table to the registry (idempotent for an identical spec)."""
    for key in spec.keys:
        if key not in spec.columns.names:
            raise ValueError(f"table {spec.name!r}: key column {key!r} is not in its schema")
    old = _REGISTRY.get(spec.name)
    if old is not None and old.columns != spec.columns:
        raise ValueError(f"table {spec.name!r} is already registered with a different schema")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> TableSpec:
    """The spec of a registered table; ``KeyError`` with the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no table {name!r} is registered; known: {', '.join(sorted(_REGISTRY))}") from None


def registered() -> dict[str, TableSpec]:
    """A copy of the registry, by table name."""
    return dict(_REGISTRY)


# Import order registers the tables. Each stage owns one module.
def rows_with_defaults(name: str, n: int, /, **columns: list) -> pa.Table:
    """``n`` rows of table ``name``: the given columns, every other one null, or ``""`` / ``True`` / ``0``
    where the schema forbids null (test and benchmark fixtures; provenance is stamped by the upsert)."""

    def default(f: pa.Field):
        if f.nullable:
            return None
        return "" if pa.types.is_string(f.type) else (True if pa.types.is_boolean(f.type) else 0)

    return pa.table({f.name: pa.array(columns.get(f.name, [default(f)] * n), f.type) for f in get(name).columns})


from warehouse.schemas import analysis as _analysis  # noqa: E402,F401
from warehouse.schemas import anomaly as _anomaly  # noqa: E402,F401
from warehouse.schemas import core as _core  # noqa: E402,F401
from warehouse.schemas import demo as _demo  # noqa: E402,F401
from warehouse.schemas import embeddings as _embeddings  # noqa: E402,F401
from warehouse.schemas import morphometrics as _morphometrics  # noqa: E402,F401
from warehouse.schemas import photometry as _photometry  # noqa: E402,F401
from warehouse.schemas import segmentation as _segmentation  # noqa: E402,F401
from warehouse.schemas import training as _training  # noqa: E402,F401
