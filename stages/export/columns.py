"""How each column of an export is laid out in a fixed-width binary format (FITS, VOTable BINARY2).

A fixed-width row needs every cell's size before the first row is written, so each column is planned
from its Arrow type and the :class:`warehouse.export_source.ColumnProfile` of one aggregate pass:

==========================  =================  ==========  ===============================================
Arrow type                  numpy (big-endian)  FITS TFORM  VOTable datatype
==========================  =================  ==========  ===============================================
bool                        u1 (``T``/``F``)    ``L``       ``boolean``
int8/uint8/int16            >i2                 ``I``       ``short``
uint16/int32                >i4                 ``J``       ``int``
uint32/int64/uint64         >i8                 ``K``       ``long`` (uint64 above 2**63-1: an error)
float16/float32             >f4                 ``E``       ``float``
float64, decimal            >f8                 ``D``       ``double``
string                      S<bytes>            ``<w>A``    ``char`` / ``unicodeChar`` (not ASCII), arraysize w
list of numbers             (k,) of the above   ``<k>E`` ...  same datatype, arraysize k
list of strings             S<bytes>            ``<w>A``    ``char``: items joined by ``;``
timestamp / date            S<bytes>            ``<w>A``    ``char``: ISO 8601 (``...Z`` for UTC)
==========================  =================  ==========  ===============================================

A list column whose lists differ in length is padded to the longest with NaN (float lists; its
description says so); integer lists of differing length, binary, struct
and map columns are refused with an error naming the column. NULL: NaN for floats, a per-format null
(FITS ``TNULLn``, VOTable's null bit) otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from warehouse.errors import WarehouseError
from warehouse.export_source import LIST_SEPARATOR, ColumnProfile

__all__ = ["ColumnMeta", "ColumnPlan", "cell_values", "meta_of", "plan_columns"]


class ColumnMeta(Protocol):
    """What an export writes about a column (``warehouse.schemas.columns.ColumnDoc`` is one)."""

    unit: str | None
    ucd: str | None
    description: str | None


@dataclass(frozen=True)
class ColumnPlan:
    """One column's fixed-width layout and its documentation.

    Attributes
    ----------
    name : str
        Column name.
    kind : str
        ``bool``, ``int``, ``float`` or ``str``.
    dtype : numpy.dtype
        Big-endian type of one element (``S<w>`` for strings).
    length : int or None
        Elements per cell for an array column, ``None`` for a scalar.
    ascii : bool
        Every string is ASCII (else VOTable writes ``unicodeChar``).
    padded : bool
        Lists shorter than ``length`` are padded with NaN.
    unit, ucd, description : str or None
        From the column registry.
    """

    name: str
    kind: str
    dtype: np.dtype
    length: int | None = None
    ascii: bool = True
    padded: bool = False
    unit: str | None = None
    ucd: str | None = None
    description: str | None = None

    @property
    def width(self) -> int:
        """Bytes of one string cell."""
        return self.dtype.itemsize if self.kind == "str" else 0


def meta_of(docs: Mapping[str, ColumnMeta], name: str) -> tuple[str | None, str | None, str | None]:
    """``(unit, ucd, description)`` of ``name`` in ``docs`` (empty strings as ``None``)."""
    doc = docs.get(name)
    if doc is None:
        return None, None, None
    return (getattr(doc, "unit", None) or None, getattr(doc, "ucd", None) or None,
            getattr(doc, "description", None) or None)


_INT = {8: ">i2", 16: ">i2", 32: ">i4", 64: ">i8"}
_UINT = {8: ">i2", 16: ">i4", 32: ">i8", 64: ">i8"}
_TIMESTAMP_WIDTH = 27  # 2023-11-14T22:13:20.000000Z


def _refuse(name: str, t: pa.DataType, fmt: str, why: str = "") -> WarehouseError:
    return WarehouseError(f"column {name!r} ({t}) cannot be written as {fmt}{why}; leave it out or cast it "
                          "with --sql, or export as parquet")


def _scalar(name: str, t: pa.DataType, prof: ColumnProfile, fmt: str) -> tuple[str, np.dtype]:
    if pa.types.is_boolean(t):
        return "bool", np.dtype("u1")
    if pa.types.is_integer(t):
        if t.bit_width == 64 and pa.types.is_unsigned_integer(t) and (prof.max_value or 0) > 2**63 - 1:
            raise _refuse(name, t, fmt, f": {prof.max_value} is beyond a signed 64-bit integer")
        table = _UINT if pa.types.is_unsigned_integer(t) else _INT
        return "int", np.dtype(table[t.bit_width])
    if pa.types.is_float16(t) or pa.types.is_float32(t):
        return "float", np.dtype(">f4")
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float", np.dtype(">f8")
    raise _refuse(name, t, fmt)


def plan_columns(schema: pa.Schema, profiles: Mapping[str, ColumnProfile], docs: Mapping[str, ColumnMeta],
                 fmt: str) -> list[ColumnPlan]:
    """A :class:`ColumnPlan` per field of ``schema``.

    Parameters
    ----------
    schema : pyarrow.Schema
        The rows' schema.
    profiles : mapping
        Column name -> :class:`ColumnProfile` (string widths, list lengths, integer ranges).
    docs : mapping
        Column name -> unit, UCD and description (missing names: none).
    fmt : str
        The format's name, for error messages.

    Raises
    ------
    WarehouseError
        A column the format cannot hold (named, with what to do instead).
    """
    plans = []
    for f in schema:
        t, prof = f.type, profiles.get(f.name, ColumnProfile())
        unit, ucd, description = meta_of(docs, f.name)
        common = {"name": f.name, "unit": unit, "ucd": ucd, "description": description}
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            plans.append(ColumnPlan(kind="str", dtype=np.dtype(f"S{max(prof.max_bytes or 0, 1)}"),
                                    ascii=prof.ascii, **common))
        elif pa.types.is_timestamp(t):
            plans.append(ColumnPlan(kind="str", dtype=np.dtype(f"S{_TIMESTAMP_WIDTH}"), **common))
        elif pa.types.is_date(t):
            plans.append(ColumnPlan(kind="str", dtype=np.dtype("S10"), **common))
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            vt = t.value_type
            if pa.types.is_string(vt) or pa.types.is_large_string(vt):
                plans.append(ColumnPlan(kind="str", dtype=np.dtype(f"S{max(prof.max_bytes or 0, 1)}"),
                                        ascii=prof.ascii, **common))
                continue
            kind, dtype = _scalar(f.name, vt, ColumnProfile(), fmt)
            longest = t.list_size if pa.types.is_fixed_size_list(t) else (prof.max_len or 0)
            padded = prof.min_len is not None and prof.min_len != longest
            if padded and kind != "float":
                raise _refuse(f.name, t, fmt, f": its lists hold {prof.min_len} to {longest} items")
            if padded:
                common["description"] = (f"{description or ''} (lists of {prof.min_len} to {longest} items, "
                                          f"padded with NaN to {longest})").lstrip()
            plans.append(ColumnPlan(kind=kind, dtype=dtype, length=max(int(longest), 1), padded=padded, **common))
        else:
            kind, dtype = _scalar(f.name, t, prof, fmt)
            plans.append(ColumnPlan(kind=kind, dtype=dtype, **common))
    return plans


def _fixed_bytes(arr: pa.Array, width: int, name: str) -> np.ndarray:
    """Strings (NULL as empty) as an ``(n,)`` array of ``S<width>``, NUL-padded, built from Arrow's buffers."""
    arr = pc.fill_null(arr, "").cast(pa.large_binary())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if n and int(lengths.max(initial=0)) > width:
        raise WarehouseError(f"column {name!r} holds a {int(lengths.max())}-byte string where the first pass over "
                             f"the rows found at most {width}: the query's rows changed between the two passes")
    out = np.zeros((n, width), np.uint8)
    total = int(offsets[-1] - offsets[0]) if n else 0
    if total:
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)
        out[rows, cols] = data[offsets[0]:offsets[-1]]
    return out.view(f"S{width}").reshape(n)


def _numbers(arr: pa.Array, plan: ColumnPlan) -> np.ndarray:
    """Numbers of a scalar or list-value array, NULL as NaN (floats) or 0, in the plan's type (native order)."""
    if plan.kind == "bool":
        return np.where(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), ord("T"), ord("F")).astype("u1")
    if pa.types.is_decimal(arr.type):
        arr = arr.cast(pa.float64())
    fill = np.nan if plan.kind == "float" else 0
    return pc.fill_null(arr, fill).to_numpy(zero_copy_only=False).astype(plan.dtype.newbyteorder("="), copy=False)


def _list_cells(arr: pa.Array, plan: ColumnPlan) -> np.ndarray:
    """A list column as an ``(n, length)`` array, short lists padded with NaN, a NULL list all NaN / 0."""
    n, k = len(arr), int(plan.length or 1)
    fill = np.nan if plan.kind == "float" else 0
    out = np.full((n, k), fill, dtype=plan.dtype.newbyteorder("="))
    if pa.types.is_fixed_size_list(arr.type) and arr.null_count == 0 and not plan.padded:
        return _numbers(arr.flatten(), plan).reshape(n, k)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = _numbers(pc.list_flatten(arr), plan)
    if values.size:
        rows = np.repeat(np.arange(n), lengths)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        cols = np.arange(values.size) - np.repeat(starts, lengths)
        out[rows, cols] = values
    return out


def cell_values(column: pa.Array | pa.ChunkedArray, plan: ColumnPlan) -> tuple[np.ndarray, np.ndarray]:
    """One column of a batch as ``(values, null)``: values ready for the plan's dtype, ``null`` a bool per row.

    Raises
    ------
    WarehouseError
        A string longer than the profile found (the rows changed between the two passes).
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    null = arr.is_null().to_numpy(zero_copy_only=False).astype(bool)
    t = arr.type
    if plan.kind == "str":
        if pa.types.is_timestamp(t):
            text = pc.strftime(arr.cast(pa.timestamp("us", tz=t.tz)), format="%Y-%m-%dT%H:%M:%S")
            arr = pc.binary_join_element_wise(text, pa.scalar("Z" if t.tz else ""), "")
        elif pa.types.is_date(t):
            arr = arr.cast(pa.string())
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            arr = pc.binary_join(arr, LIST_SEPARATOR)
        return _fixed_bytes(arr, plan.width, plan.name), null
    if plan.length is not None:
        return _list_cells(arr, plan), null
    return _numbers(arr, plan), null
