"""Arrow tables to VOTables with astropy's writer: FIELD datatypes, units, UCDs and descriptions, errors as INFO.

Every VO answer is built here as an :class:`astropy.io.votable.tree.VOTableFile` (never as XML text):
one ``RESOURCE type="results"`` holding one ``TABLE``, its ``FIELD`` s typed from the Arrow schema and
described from :mod:`warehouse.schemas.columns` (or the caller's own docs for computed columns), and
``INFO`` elements for the query status (``QUERY_STATUS`` = ``OK`` / ``OVERFLOW`` / ``ERROR``, and the
``Error`` INFO that SCS 1.03 and SIA 1.0 clients look for).

Type mapping: booleans, integers (``short``/``int``/``long``), floats (``float``/``double``); text as
``char`` (``unicodeChar`` when not ASCII), ``arraysize="*"``; fixed-size lists (embeddings) as arrays of
their length, variable lists of numbers as ``arraysize="*"``, lists of text as one comma-separated
string; binary columns as their byte length (``<name>_bytes``, as in the JSON API); times, dates,
decimals and anything else as text. Nulls are written as empty cells (NaN for floats).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from astropy.io.votable.tree import Field, Info, Param, Resource, TableElement, VOTableFile

from warehouse.schemas.columns import ColumnDoc

__all__ = ["VOInfo", "error_votable", "field_kind", "table_votable", "votable_bytes"]

VOTABLE_MIME = "application/x-votable+xml"


@dataclass(frozen=True)
class VOInfo:
    """An ``INFO`` element: name, value and optional text."""

    name: str
    value: str
    content: str | None = None


@dataclass(frozen=True)
class _Kind:
    datatype: str
    arraysize: str | None
    convert: str  # how values are turned into the column: "num", "bool", "text", "fixed", "varnum", "bytes"
    dtype: str | None = None
    xtype: str | None = None


def field_kind(arrow_type: pa.DataType) -> _Kind:
    """The VOTable ``datatype`` / ``arraysize`` of an Arrow type, and how its values are converted."""
    t = arrow_type
    if pa.types.is_boolean(t):
        return _Kind("boolean", None, "bool")
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return _Kind("short", None, "num", "i2")
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return _Kind("int", None, "num", "i4")
    if pa.types.is_integer(t):
        return _Kind("long", None, "num", "i8")
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return _Kind("float", None, "num", "f4")
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _Kind("double", None, "num", "f8")
    if pa.types.is_fixed_size_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        inner = field_kind(t.value_type)
        return _Kind(inner.datatype, str(t.list_size), "fixed", inner.dtype)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
            pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        inner = field_kind(t.value_type)
        return _Kind(inner.datatype, "*", "varnum", inner.dtype)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _Kind("long", None, "bytes", "i8")
    if pa.types.is_timestamp(t):
        return _Kind("char", "*", "text", xtype="timestamp")
    return _Kind("char", "*", "text")


def _text(column: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    values = column.to_pylist()
    mask = np.array([v is None for v in values], dtype=bool)
    out = []
    for v in values:
        if v is None:
            out.append("")
        elif isinstance(v, list | tuple):
            out.append(",".join("" if x is None else str(x) for x in v))
        elif hasattr(v, "isoformat"):
            out.append(v.isoformat())
        else:
            out.append(str(v))
    return out, mask


def _values(column: pa.ChunkedArray, kind: _Kind) -> tuple[np.ndarray | list, np.ndarray]:
    """Column values for astropy and the null mask."""
    nulls = column.is_null().to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, bool)
    if kind.convert == "bool":
        return column.fill_null(False).to_numpy(zero_copy_only=False).astype(bool), nulls
    if kind.convert == "num":
        if pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.float64())
        fill = np.nan if kind.dtype and kind.dtype.startswith("f") else 0
        return column.fill_null(fill).to_numpy(zero_copy_only=False).astype(kind.dtype), nulls
    if kind.convert == "bytes":
        return pc.binary_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype("i8"), nulls
    if kind.convert == "fixed":
        n = int(kind.arraysize or 0)
        flat = [np.full(n, np.nan if kind.dtype.startswith("f") else 0, kind.dtype) if v is None
                else np.asarray(v, kind.dtype) for v in column.to_pylist()]
        return (np.stack(flat) if flat else np.zeros((0, n), kind.dtype)), nulls
    if kind.convert == "varnum":
        out = np.empty(len(column), dtype=object)
        for i, v in enumerate(column.to_pylist()):
            out[i] = np.asarray([np.nan if x is None else x for x in (v or [])], dtype=kind.dtype)
        return out, nulls
    return _text(column)


def _info(name: str, value: str, content: str | None = None) -> Info:
    info = Info(name=name, value=value)
    if content:
        info.content = content
    return info


def _unique(names: Sequence[str]) -> list[str]:
    """Column names made unique (a join's two ``galaxy_id`` become ``galaxy_id``, ``galaxy_id_2``)."""
    seen: set[str] = set()
    out = []
    for name in names:
        new, i = name, 2
        while new in seen:
            new, i = f"{name}_{i}", i + 1
        seen.add(new)
        out.append(new)
    return out


def _ascii(values: Iterable[str]) -> bool:
    return all(v.isascii() for v in values)


def table_votable(
    table: pa.Table,
    docs: Mapping[str, ColumnDoc | None],
    *,
    ucd1: Mapping[str, str] | None = None,
    infos: Sequence[VOInfo] = (),
    params: Sequence[Param] = (),
    name: str = "results",
    description: str | None = None,
    overflow: bool = False,
) -> VOTableFile:
    """One ``RESOURCE type="results"`` with one ``TABLE`` of ``table``'s rows.

    Parameters
    ----------
    table : pyarrow.Table
        The rows.
    docs : mapping of str to ColumnDoc or None
        Unit, UCD and description per column (a missing or ``None`` entry: none written).
    ucd1 : mapping of str to str, optional
        A UCD1 word that replaces the UCD1+ one for these columns (SCS 1.03 / SIA 1.0 ask for
        ``ID_MAIN``, ``POS_EQ_RA_MAIN``, ``VOX:Image_Title`` ...).
    infos : sequence of VOInfo
        ``INFO`` elements of the resource (after ``QUERY_STATUS``).
    params : sequence of astropy Param
        ``PARAM`` elements of the resource (``INPUT:`` parameters of a metadata query).
    name, description : str
        The table's name and description.
    overflow : bool
        ``QUERY_STATUS`` is ``OVERFLOW`` (a row cap cut the rows), else ``OK``.
    """
    vot = VOTableFile()
    res = Resource(type="results")
    vot.resources.append(res)
    res.infos.append(Info(name="QUERY_STATUS", value="OVERFLOW" if overflow else "OK"))
    for info in infos:
        res.infos.append(_info(info.name, info.value, info.content))
    for param in params:
        res.params.append(param)
    tab = TableElement(vot, name=name)
    if description:
        tab.description = description
    res.tables.append(tab)
    kinds, columns = [], []
    table = table.rename_columns(_unique(table.column_names))
    for field in table.schema:
        kind = field_kind(field.type)
        values, mask = _values(table.column(field.name), kind)
        datatype = kind.datatype
        if kind.convert == "text" and not _ascii(values):
            datatype = "unicodeChar"
        doc = docs.get(field.name)
        fname = f"{field.name}_bytes" if kind.convert == "bytes" else field.name
        ucd = (ucd1 or {}).get(field.name) or (doc.ucd if doc else None)
        f = Field(vot, name=fname, ID=None, datatype=datatype, arraysize=kind.arraysize,
                  ucd=ucd, unit=doc.unit if doc and kind.convert != "bytes" else ("byte" if kind.convert == "bytes"
                                                                                  else None),
                  xtype=kind.xtype)
        if doc and doc.description:
            f.description = doc.description if kind.convert != "bytes" else f"size of: {doc.description}"
        tab.fields.append(f)
        kinds.append(kind)
        columns.append((fname, values, mask))
    tab.create_arrays(table.num_rows)
    for (fname, values, mask), kind in zip(columns, kinds):
        if not table.num_rows:
            continue
        if kind.convert == "varnum":
            for i, v in enumerate(values):
                tab.array[fname][i] = v
        else:
            tab.array[fname] = values
        if kind.convert == "fixed":
            tab.array.mask[fname] = np.repeat(mask[:, None], int(kind.arraysize or 0), axis=1)
        elif kind.convert != "varnum":
            tab.array.mask[fname] = mask
    return vot


def error_votable(message: str, *, status: str = "ERROR") -> VOTableFile:
    """A VOTable saying ``message`` failed: ``INFO name="Error"`` under the root (where SCS 1.03 and
    SIA 1.0 clients look first) and ``INFO name="QUERY_STATUS" value="ERROR"`` in one
    ``RESOURCE type="results"`` without a table (DALI, TAP)."""
    vot = VOTableFile()
    vot.infos.append(_info("Error", message))
    res = Resource(type="results")
    vot.resources.append(res)
    res.infos.append(_info("QUERY_STATUS", status, message))
    return vot


def votable_bytes(vot: VOTableFile) -> bytes:
    """The VOTable as XML bytes (TABLEDATA serialisation, VOTable 1.4)."""
    buf = io.BytesIO()
    vot.to_xml(buf, tabledata_format="tabledata")
    return buf.getvalue()
