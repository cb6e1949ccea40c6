"""FITS binary table, written row chunk by row chunk.

astropy's ``BinTableHDU.writeto`` needs the whole table as one record array in memory (a million rows
of 768-float embeddings: 3 GB, plus astropy's copies). A binary table's data is only its rows,
big-endian and fixed-width, one after another, then zero-padded to a 2880-byte block. So astropy
builds and serialises the headers (``TFORMn``, ``TUNITn``, ``TNULLn``; ``TUCDn`` and ``TCOMMn`` as
STILTS and TOPCAT read them), each record batch is laid out as a numpy structured array with the
same big-endian row layout and appended, and at the end ``NAXIS2`` (written as 0) is overwritten in
place with the row count and the block padded. Memory is one batch whatever the row count.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
import pyarrow as pa
from astropy.io import fits

from stages.export.columns import ColumnPlan, cell_values
from warehouse.errors import WarehouseError

__all__ = ["FitsWriter", "tform"]

_BLOCK = 2880
_LETTER = {"bool": "L", ">i2": "I", ">i4": "J", ">i8": "K", ">f4": "E", ">f8": "D"}


def tform(plan: ColumnPlan) -> str:
    """The ``TFORMn`` of a column: ``D``, ``12A``, ``768E``, ..."""
    if plan.kind == "str":
        return f"{plan.width}A"
    letter = "L" if plan.kind == "bool" else _LETTER[plan.dtype.str]
    return f"{plan.length}{letter}" if plan.length is not None else letter


class FitsWriter:
    """A primary HDU and one ``BINTABLE`` extension streamed to ``fh`` (a seekable binary file).

    Parameters
    ----------
    fh : binary file
        Opened for writing, seekable (``NAXIS2`` is set at :meth:`close`).
    plans : list of ColumnPlan
        One per column (:func:`stages.export.columns.plan_columns`).
    name : str
        ``EXTNAME`` of the table.
    nulls : dict
        Column name -> NULL cells found by the profile (integers with NULLs get ``TNULLn``).
    minimum : dict
        Column name -> smallest integer, so ``TNULLn`` (the type's minimum) cannot clash with a value.
    """

    def __init__(self, fh: BinaryIO, plans: list[ColumnPlan], *, name: str,
                 nulls: dict[str, int], minimum: dict[str, int | None]) -> None:
        self.fh, self.plans, self.rows = fh, plans, 0
        self._tnull: dict[int, int] = {}
        columns = []
        for i, p in enumerate(plans):
            null = None
            if p.kind == "int" and nulls.get(p.name, 0) and p.length is None:
                null = int(np.iinfo(p.dtype).min)
                low = minimum.get(p.name)
                if low is not None and low <= null:
                    raise WarehouseError(f"column {p.name!r} holds NULLs and the value {low}, which FITS would "
                                         "need as its TNULL; export as votable or parquet")
                self._tnull[i] = null
            columns.append(fits.Column(name=p.name, format=tform(p), unit=p.unit, null=null))
        hdu = fits.BinTableHDU.from_columns(columns, nrows=0, name=name.upper()[:68])
        header = hdu.header
        for i, p in enumerate(plans, start=1):
            if p.ucd:
                header.set(f"TUCD{i}", p.ucd, "UCD of column", after=f"TFORM{i}")
            if p.description:
                header.set(f"TCOMM{i}", p.description, after=f"TFORM{i}")
        primary = fits.PrimaryHDU()
        primary.header["ORIGIN"] = ("astrovision export", "the table is in extension 1")
        fh.write(primary.header.tostring().encode("ascii"))
        self._naxis2_at = fh.tell() + 80 * header.index("NAXIS2")
        fh.write(header.tostring().encode("ascii"))
        self._data_at = fh.tell()
        self._dtype = np.dtype([(f"f{i}", p.dtype if p.kind != "bool" else "u1", (p.length,) if p.length else ())
                                for i, p in enumerate(plans)])
        self.row_bytes = self._dtype.itemsize

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch`` (same columns as the plans)."""
        rows = np.zeros(batch.num_rows, self._dtype)
        for i, p in enumerate(self.plans):
            values, null = cell_values(batch.column(i), p)
            if p.kind == "bool":
                values = np.where(null, 0, values)  # FITS L: 'T', 'F', or 0 for undefined
            elif i in self._tnull:
                values = np.where(null, self._tnull[i], values)
            rows[f"f{i}"] = values
        self.fh.write(rows.tobytes())
        self.rows += batch.num_rows

    def close(self) -> None:
        """Pad the data to a whole block and write the row count into ``NAXIS2``."""
        size = self.fh.tell() - self._data_at
        self.fh.write(b"\0" * (-size % _BLOCK))
        end = self.fh.tell()
        self.fh.seek(self._naxis2_at)
        self.fh.write(fits.Card("NAXIS2", self.rows, "number of rows in table").image.encode("ascii"))
        self.fh.seek(end)
