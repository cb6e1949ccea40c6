"""CSV with a commented header: ECSV 1.0 (astropy's Enhanced CSV), comma-delimited, streamed.

The header (lines starting ``#``: YAML with each column's ``datatype``, ``unit``, ``description`` and
``meta: {ucd: ...}``) is written by astropy from a zero-row table of the same columns; the rows follow
as plain CSV written by pyarrow's C++ CSV writer, one record batch at a time. Any CSV reader that skips
``#`` lines (``pandas.read_csv(comment="#")``, spreadsheets after the header) reads the rows;
``astropy.table.Table.read`` reads units, descriptions and UCDs back. Array cells (embeddings) are
JSON lists in one quoted field (``subtype: float32[768]`` in the header, as astropy writes them),
lists of varying length JSON text; timestamps ISO 8601 text; booleans ``True``/``False``; NULL an
empty field. Binary columns are refused (export as parquet).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from astropy.table import Column, Table

from stages.export.columns import ColumnMeta, meta_of
from warehouse.errors import WarehouseError

__all__ = ["EcsvWriter", "text_column"]


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _json_items(values: pa.Array) -> pa.Array:
    """Each value as JSON text: numbers as Arrow prints them (NaN as ``NaN``), strings quoted and escaped."""
    if _is_text(values.type):
        escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        return pc.binary_join_element_wise('"', escaped, '"', "")
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, "true", "false")
    text = values.cast(pa.string())
    if pa.types.is_floating(values.type):
        text = pc.if_else(pc.is_nan(values), "NaN", text)
    return pc.fill_null(text, "null")


def text_column(arr: pa.Array) -> pa.Array:
    """A column as CSV writes it: lists as JSON text, timestamps ISO 8601, booleans ``True``/``False``."""
    t = arr.type
    if _is_list(t):
        if pa.types.is_fixed_size_list(t):
            arr = pc.cast(arr, pa.list_(t.value_type))
        items = _json_items(arr.values)
        lists = pa.ListArray.from_arrays(arr.offsets, items, mask=arr.is_null())
        return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    if pa.types.is_timestamp(t):
        text = pc.strftime(arr.cast(pa.timestamp("us", tz=t.tz)), format="%Y-%m-%dT%H:%M:%S")
        return pc.binary_join_element_wise(text, "Z" if t.tz else "", "")
    if pa.types.is_boolean(t):
        return pc.if_else(arr, "True", "False")
    if pa.types.is_date(t) or pa.types.is_decimal(t):
        return arr.cast(pa.string()) if pa.types.is_date(t) else arr.cast(pa.float64())
    return arr


def _header_column(f: pa.Field) -> np.ndarray:
    t = f.type
    if pa.types.is_fixed_size_list(t) and not _is_text(t.value_type):
        return np.zeros((0, t.list_size), t.value_type.to_pandas_dtype())
    if pa.types.is_boolean(t):
        return np.zeros(0, bool)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.zeros(0, t.to_pandas_dtype())
    if pa.types.is_decimal(t):
        return np.zeros(0, float)
    if _is_text(t) or _is_list(t) or pa.types.is_timestamp(t) or pa.types.is_date(t):
        return np.zeros(0, str)
    raise WarehouseError(f"column {f.name!r} ({t}) cannot be written as CSV; leave it out or cast it with --sql, "
                         "or export as parquet")


def _header(schema: pa.Schema, docs: Mapping[str, ColumnMeta]) -> str:
    table = Table()
    for f in schema:
        unit, ucd, description = meta_of(docs, f.name)
        table[f.name] = Column(_header_column(f), unit=unit, description=description,
                               meta={"ucd": ucd} if ucd else {})
    out = io.StringIO()
    table.write(out, format="ascii.ecsv", delimiter=",")
    return out.getvalue()


class EcsvWriter:
    """An ECSV file streamed to ``fh`` (text, UTF-8).

    Parameters
    ----------
    fh : binary file
        Opened for writing (the text is UTF-8).
    schema : pyarrow.Schema
        The rows' schema.
    docs : mapping
        Column name -> unit, UCD, description.
    """

    def __init__(self, fh: BinaryIO, schema: pa.Schema, *, docs: Mapping[str, ColumnMeta]) -> None:
        self.fh, self.rows = fh, 0
        fh.write(_header(schema, docs).encode("utf-8"))
        self._schema = pa.schema([pa.field(f.name, text_column(pa.array([], f.type)).type) for f in schema])
        self._writer = pacsv.CSVWriter(fh, self._schema,
                                       write_options=pacsv.WriteOptions(include_header=False,
                                                                        quoting_style="needed"))

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch``."""
        cols = [text_column(c) for c in batch.columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(cols, schema=self._schema))
        self.rows += batch.num_rows

    def close(self) -> None:
        """Flush the rows."""
        self._writer.close()
