"""One export: a table, a view or a read-only query of the warehouse to a VOTable, FITS, Parquet or CSV file.

The rows are profiled once (row count for the progress bar; string widths, list lengths and integer
ranges for the fixed-width formats), then streamed from DuckDB in record batches into the format's
writer, which holds one batch at a time. Units, UCDs and descriptions come from the column registry
(:func:`warehouse.schemas.columns.column_docs` of the table or view; a query's columns by name
from the relations it reads, :func:`warehouse.schemas.columns.find_doc`).

The file is written under a temporary name in the output's directory and renamed onto the output
only when complete, so a failure or Ctrl-C leaves no partial file (and an existing output as it was).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from tqdm.auto import tqdm

from stages.export.columns import ColumnMeta, plan_columns
from warehouse.errors import WarehouseError

if TYPE_CHECKING:
    import pyarrow as pa

    from warehouse import Warehouse
    from warehouse.export_source import ColumnProfile, ExportSource

__all__ = ["FORMATS", "ExportResult", "batch_rows_for", "column_docs_of", "export", "limit_lance_readahead",
           "write_rows"]

FORMATS: dict[str, str] = {"votable": ".vot", "fits": ".fits", "parquet": ".parquet", "csv": ".csv"}
"""Format name -> the usual file suffix."""

BATCH_ROWS = 65_536
"""Most rows per record batch read from DuckDB and written at once."""

BATCH_BYTES = 16 * 2**20
"""Rough size of one batch: wide rows (embeddings) come in fewer rows per batch, so memory stays flat."""


LANCE_IO_BUFFER = 64 * 2**20
"""Lance's read-ahead for an export (``LANCE_DEFAULT_IO_BUFFER_SIZE``): its default lets a scan buffer
hundreds of MB ahead of a writer that is slower than the disk (200,000 x 2 x 384 float32 rows through
DuckDB: 770 MiB peak RSS with the default, 400,000: 991; with 64 MiB: 699 and 771)."""


def limit_lance_readahead(size: int = LANCE_IO_BUFFER) -> None:
    """Set ``LANCE_DEFAULT_IO_BUFFER_SIZE`` for this process unless the user set it (before the first scan)."""
    os.environ.setdefault("LANCE_DEFAULT_IO_BUFFER_SIZE", str(int(size)))


def _cell_bytes(t: pa.DataType, profile: ColumnProfile | None) -> int:
    import pyarrow as pa

    if pa.types.is_fixed_size_list(t):
        return t.list_size * _cell_bytes(t.value_type, None)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return max(profile.max_len or 1 if profile else 1, 1) * _cell_bytes(t.value_type, None) + 8
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return (profile.max_bytes or 0 if profile else 16) + 8
    try:
        return max(t.bit_width // 8, 1)
    except ValueError:  # binary and other variable-width types: a guess
        return 1024


def batch_rows_for(schema: pa.Schema, profiles: dict[str, ColumnProfile], most: int = BATCH_ROWS) -> int:
    """Rows per batch: about :data:`BATCH_BYTES` of row data, at most ``most``, at least 256."""
    row = sum(_cell_bytes(f.type, profiles.get(f.name)) for f in schema)
    return int(max(256, min(most, BATCH_BYTES // max(row, 1))))


class Writer(Protocol):
    """What each format's writer does: take record batches, count rows, finish the file."""

    rows: int

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch``."""

    def close(self) -> None:
        """Finish the file (footer, padding, row count)."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes
    ----------
    path : Path
        The file.
    format : str
        One of :data:`FORMATS`.
    rows, columns : int
        Rows and columns written.
    bytes : int
        File size.
    seconds : float
        Wall time, profile pass included.
    """

    path: Path
    format: str
    rows: int
    columns: int
    bytes: int
    seconds: float


def column_docs_of(source: ExportSource) -> dict[str, ColumnMeta]:
    """Unit, UCD and description of each column of ``source`` that the registry knows."""
    from warehouse.schemas.columns import column_docs, find_doc

    if source.name in source.relations and len(source.relations) == 1 and source.name != "query":
        try:
            return dict(column_docs(source.name))
        except KeyError:
            pass
    docs = {}
    for name in source.schema.names:
        doc = find_doc(name, list(source.relations))
        if doc is not None:
            docs[name] = doc
    return docs


def check_output(out: Path, *, overwrite: bool) -> Path:
    """``out`` made absolute, or a one-line :class:`WarehouseError` saying why it cannot be written."""
    out = Path(out).expanduser().absolute()
    if out.is_dir():
        raise WarehouseError(f"{out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise WarehouseError(f"{out} exists; pass --overwrite to replace it")
    parent = out.parent
    if not parent.is_dir():
        raise WarehouseError(f"cannot write {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WarehouseError(f"cannot write {out}: directory {parent} is not writable")
    return out


def _writer(fmt: str, fh: BinaryIO, source: ExportSource, docs: dict[str, ColumnMeta],
            profiles: dict[str, ColumnProfile], infos: dict[str, str]) -> Writer:
    if fmt == "parquet":
        from stages.export.parquet import ParquetWriter

        return ParquetWriter(fh, source.schema, docs=docs, profiles=profiles)
    if fmt == "csv":
        from stages.export.ecsv import EcsvWriter

        return EcsvWriter(fh, source.schema, docs=docs)
    plans = plan_columns(source.schema, profiles, docs, fmt="FITS" if fmt == "fits" else "VOTable")
    if fmt == "fits":
        from stages.export.fits import FitsWriter

        return FitsWriter(fh, plans, name=source.name, nulls={k: p.nulls for k, p in profiles.items()},
                          minimum={k: p.min_value for k, p in profiles.items()})
    from stages.export.votable import VOTableWriter

    return VOTableWriter(fh, plans, name=source.name, infos=infos)


def write_rows(source: ExportSource, out: Path, fmt: str, *, docs: dict[str, ColumnMeta] | None = None,
               overwrite: bool = False, batch_rows: int = BATCH_ROWS, progress: bool = True,
               infos: dict[str, str] | None = None,
               on_batch: Callable[[pa.RecordBatch], None] | None = None) -> ExportResult:
    """Write the rows of ``source`` to ``out`` in format ``fmt`` (temporary file, then rename).

    Parameters
    ----------
    source : ExportSource
        From :func:`warehouse.export_source.open_export`.
    out : Path
        The file to write.
    fmt : str
        ``votable``, ``fits``, ``parquet`` or ``csv``.
    docs : dict, optional
        Column name -> unit, UCD, description (default: :func:`column_docs_of`).
    overwrite : bool
        Replace an existing ``out``.
    batch_rows : int
        Most rows per batch (fewer for wide rows: about :data:`BATCH_BYTES` each).
    progress : bool
        Show a tqdm bar on stderr (``TQDM_DISABLE=1`` hides it too).
    infos : dict, optional
        Name -> value written as VOTable ``INFO`` elements (the query, the table versions).
    on_batch : callable, optional
        Called with each batch after it is written (the benchmark samples memory there).

    Raises
    ------
    WarehouseError
        Unknown format, an output that exists (without ``overwrite``) or cannot be written, a
        column the format cannot hold; ``SQLError`` when the query fails. No file is left behind.
    """
    if fmt not in FORMATS:
        raise WarehouseError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = check_output(out, overwrite=overwrite)
    start = time.perf_counter()
    docs = column_docs_of(source) if docs is None else docs
    total, profiles = source.profile()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            writer = _writer(fmt, fh, source, docs, profiles, infos or {})
            bar = tqdm(total=total, desc=f"export {source.name}", unit="row", unit_scale=True,
                       mininterval=0.5, dynamic_ncols=True, disable=None if progress else True)
            try:
                with bar:
                    for batch in source.batches(batch_rows_for(source.schema, profiles, batch_rows)):
                        writer.write(batch)
                        bar.update(batch.num_rows)
                        if on_batch is not None:
                            on_batch(batch)
            except BaseException:
                with contextlib.suppress(Exception):
                    writer.close()  # release the format library's handle; the file is deleted below
                raise
            writer.close()
            rows = writer.rows
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it 0600; the output gets the usual mode
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ExportResult(path=out, format=fmt, rows=rows, columns=len(source.schema),
                        bytes=out.stat().st_size, seconds=time.perf_counter() - start)


def export(wh: Warehouse, out: Path | str, fmt: str, *, table: str | None = None, sql: str | None = None,
           overwrite: bool = False, batch_rows: int = BATCH_ROWS, progress: bool = True,
           memory_limit: str | None = None,
           on_batch: Callable[[pa.RecordBatch], None] | None = None) -> ExportResult:
    """Export a table or view (``table``) or a read-only query (``sql``) of ``wh`` to ``out``.

    The query runs in the read-only sandbox of :class:`warehouse.sql_engine.SQLEngine` (DuckDB's
    ``memory_limit`` as given) at the tables' current versions, which the file records (VOTable
    ``INFO``). See :func:`write_rows` for the rest.

    Raises
    ------
    WarehouseError
        Unknown table, bad SQL (``SQLError``), bad output, unwritable column; one line each.
    """
    from warehouse.export_source import open_export
    from warehouse.sql_engine import SQLEngine, SQLLimits

    if fmt not in FORMATS:
        raise WarehouseError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = check_output(Path(out), overwrite=overwrite)  # before the engine is built: fail fast
    versions = wh.versions()
    engine = SQLEngine(wh, versions, limits=SQLLimits(memory_limit=memory_limit))
    source = open_export(engine, table=table, sql=sql)
    infos = {"QUERY": sql} if sql is not None else {"TABLE": str(table)}
    if versions:
        infos["TABLE_VERSIONS"] = ", ".join(f"{n}:{v}" for n, v in sorted(versions.items()))
    return write_rows(source, out, fmt, overwrite=overwrite, batch_rows=batch_rows, progress=progress,
                      infos=infos, on_batch=on_batch)
