"""VOTable 1.4 with BINARY2 serialisation, written record batch by record batch.

astropy's VOTable writer serialises a whole table held in memory (a masked structured array) and
converts each cell in Python. Here astropy writes the document (``VOTABLE``, ``RESOURCE``, ``TABLE``,
every ``FIELD`` with ``unit``, ``ucd`` and ``DESCRIPTION``, an ``INFO`` with the query) around a
one-row placeholder; the document is cut at its ``<STREAM encoding="base64">`` element, and the rows
go there instead: BINARY2 rows are a null bitmask (one bit per field, most significant first) and
then each field big-endian, fixed-width, which numpy lays out for a whole batch at once; the bytes
are base64-encoded in runs of whole 3-byte groups so the stream stays one valid base64 text.
Memory is one batch whatever the row count.
"""

from __future__ import annotations

import base64
import io
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from astropy.io.votable.tree import Field, Info, Resource, TableElement, VOTableFile

from stages.export.columns import ColumnPlan, cell_values

__all__ = ["VOTableWriter", "datatype"]

_TYPES = {">i2": "short", ">i4": "int", ">i8": "long", ">f4": "float", ">f8": "double"}
_OPEN = b'<STREAM encoding="base64">'
_CLOSE = b"</STREAM>"


def datatype(plan: ColumnPlan) -> str:
    """The VOTable ``datatype`` of a column."""
    if plan.kind == "bool":
        return "boolean"
    if plan.kind == "str":
        return "char" if plan.ascii else "unicodeChar"
    return _TYPES[plan.dtype.str]


def _chars(plan: ColumnPlan) -> int:
    """``arraysize`` of a string column: at least 2 (astropy writes ``arraysize="1"``, deprecated since
    VOTable 1.3, for a one-character column)."""
    return max(plan.width, 2)


def _cell_dtype(plan: ColumnPlan) -> np.dtype | tuple:
    if plan.kind == "str":
        return np.dtype(f"S{_chars(plan) if plan.ascii else 2 * _chars(plan)}")  # unicodeChar: UCS-2, 2 bytes
    if plan.kind == "bool":
        return np.dtype("u1")
    return (plan.dtype, (plan.length,)) if plan.length is not None else plan.dtype


def _document(plans: list[ColumnPlan], name: str, infos: dict[str, str]) -> tuple[bytes, bytes]:
    """The document before and after the rows of its one table (astropy writes it)."""
    vot = VOTableFile(version="1.4")
    resource = Resource()
    vot.resources.append(resource)
    table = TableElement(vot, name=name)
    resource.tables.append(table)
    for key, value in infos.items():
        resource.infos.append(Info(name=key, value=value))
    for p in plans:
        arraysize = None
        if p.kind == "str":
            arraysize = str(_chars(p))
        elif p.length is not None:
            arraysize = str(p.length)
        f = Field(vot, name=p.name, datatype=datatype(p), arraysize=arraysize, unit=p.unit, ucd=p.ucd)
        if p.description:
            f.description = p.description
        table.fields.append(f)
    table.create_arrays(1)
    out = io.BytesIO()
    vot.to_xml(out, tabledata_format="binary2")
    text = out.getvalue()
    start = text.index(_OPEN) + len(_OPEN)
    end = text.rindex(_CLOSE)
    return text[:start] + b"\n", text[end:]


class VOTableWriter:
    """One VOTable document with one table streamed to ``fh``.

    Parameters
    ----------
    fh : binary file
        Opened for writing.
    plans : list of ColumnPlan
        One per column (:func:`stages.export.columns.plan_columns`).
    name : str
        The ``TABLE`` name.
    infos : dict
        ``INFO`` elements of the resource (name -> value), e.g. the query.
    """

    def __init__(self, fh: BinaryIO, plans: list[ColumnPlan], *, name: str, infos: dict[str, str]) -> None:
        self.fh, self.plans, self.rows = fh, plans, 0
        head, self._tail = _document(plans, name, infos)
        fh.write(head)
        self._mask_bytes = (len(plans) + 7) // 8
        self._dtype = np.dtype([("nulls", "u1", (self._mask_bytes,))]
                               + [(f"f{i}", _cell_dtype(p)) for i, p in enumerate(plans)])
        self.row_bytes = self._dtype.itemsize
        self._carry = b""

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch`` (same columns as the plans)."""
        n = batch.num_rows
        rows = np.zeros(n, self._dtype)
        nulls = np.zeros((n, len(self.plans)), bool)
        for i, p in enumerate(self.plans):
            values, null = cell_values(batch.column(i), p)
            if p.kind == "str" and not p.ascii:
                values = np.array([v.decode("utf-8").encode("utf-16-be") for v in values.tolist()],
                                  dtype=f"S{2 * _chars(p)}")
            rows[f"f{i}"] = values
            nulls[:, i] = null
        rows["nulls"] = np.packbits(nulls, axis=1, bitorder="big").reshape(n, self._mask_bytes)
        data = self._carry + rows.tobytes()
        whole = len(data) - len(data) % 3
        self.fh.write(base64.encodebytes(data[:whole]))
        self._carry = data[whole:]
        self.rows += n

    def close(self) -> None:
        """The last bytes of the stream and the rest of the document."""
        if self._carry:
            self.fh.write(base64.encodebytes(self._carry))
        self.fh.write(self._tail)
