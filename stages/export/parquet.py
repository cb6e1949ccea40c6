"""Parquet, written record batch by record batch with pyarrow's ``ParquetWriter`` (one row group each).

Each field carries its documentation as Arrow field metadata (``unit``, ``ucd``, ``description``:
what pyarrow, polars and DuckDB show), and the schema carries astropy's own header
(``table_meta_yaml``, the YAML astropy writes for ``Table.write(..., format="parquet")``, with
``table::len::<column>`` string widths from the profile), so ``astropy.table.Table.read`` returns
the units, descriptions and UCDs (``col.meta["ucd"]``) too. Columns keep their Arrow types:
embeddings stay fixed-size lists, images stay binary. astropy's reader cannot read a NULL list
(pyarrow, polars and DuckDB can).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from astropy.table import Column, Table, meta

from stages.export.columns import ColumnMeta, meta_of
from warehouse.export_source import ColumnProfile

__all__ = ["ParquetWriter", "documented_schema"]


def _empty(t: pa.DataType) -> np.ndarray:
    """A zero-row numpy array of the type astropy makes of an Arrow column of type ``t``."""
    if pa.types.is_fixed_size_list(t):
        return np.zeros((0, t.list_size), _empty(t.value_type).dtype)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return np.zeros(0, object)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.zeros(0, str)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return np.zeros(0, bytes)
    if pa.types.is_decimal(t):
        return np.zeros(0, float)
    try:
        return np.zeros(0, t.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        return np.zeros(0, object)


def documented_schema(schema: pa.Schema, docs: Mapping[str, ColumnMeta],
                      profiles: Mapping[str, ColumnProfile]) -> pa.Schema:
    """``schema`` with each field's ``unit`` / ``ucd`` / ``description`` and astropy's table header."""
    fields, header = [], Table()
    lens = {}
    for f in schema:
        unit, ucd, description = meta_of(docs, f.name)
        md = {k: v for k, v in (("unit", unit), ("ucd", ucd), ("description", description)) if v}
        fields.append(f.with_metadata(md or None))
        header[f.name] = Column(_empty(f.type), unit=unit, description=description, meta={"ucd": ucd} if ucd else {})
        width = profiles.get(f.name, ColumnProfile()).max_bytes
        if width is not None:
            lens[f"table::len::{f.name}"] = str(max(width, 1))
    yaml = "\n".join(meta.get_yaml_from_table(header))
    return pa.schema(fields, metadata={"table_meta_yaml": yaml, **lens})


class ParquetWriter:
    """A Parquet file streamed to ``fh``, one row group per record batch.

    Parameters
    ----------
    fh : binary file
        Opened for writing.
    schema : pyarrow.Schema
        The rows' schema.
    docs : mapping
        Column name -> unit, UCD, description.
    profiles : mapping
        Column name -> :class:`ColumnProfile` (string widths for astropy's header).
    """

    def __init__(self, fh: BinaryIO, schema: pa.Schema, *, docs: Mapping[str, ColumnMeta],
                 profiles: Mapping[str, ColumnProfile]) -> None:
        self.schema = documented_schema(schema, docs, profiles)
        self._writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` as one row group."""
        self._writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=self.schema))
        self.rows += batch.num_rows

    def close(self) -> None:
        """Write the footer."""
        self._writer.close()
