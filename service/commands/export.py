"""``astrovision export``: a table, a view or a read-only query to VOTable, FITS, Parquet or CSV (ECSV).

Units, UCDs and descriptions of the column registry go into the file; the rows are streamed in
record batches (bounded memory), with a progress bar; the file appears only when complete.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from warehouse.errors import WarehouseError

from .home import warehouse_of

__all__ = ["format_of", "register"]

_SUFFIXES = {".vot": "votable", ".votable": "votable", ".xml": "votable", ".fits": "fits", ".fit": "fits",
             ".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".ecsv": "csv"}
_FORMATS = ("votable", "fits", "parquet", "csv")


def format_of(out: str, given: str | None) -> str:
    """The format asked for, else the one the output's suffix names (``.vot``, ``.fits``, ``.parquet``, ``.csv``)."""
    if given:
        return given
    fmt = _SUFFIXES.get(Path(out).suffix.lower())
    if fmt is None:
        raise WarehouseError(f"cannot tell the format from {Path(out).name!r}; pass --format "
                             f"({', '.join(_FORMATS)})")
    return fmt


def _cmd_export(args: argparse.Namespace) -> int:
    from stages.export import export
    from stages.export.job import limit_lance_readahead

    limit_lance_readahead()  # this process only exports: keep Lance from reading far ahead of the writer
    if (args.table is None) == (args.sql is None):
        raise WarehouseError("give a table or view name, or --sql \"SELECT ...\" (not both)")
    if args.batch_rows < 1:
        raise WarehouseError(f"--batch-rows must be at least 1, got {args.batch_rows}")
    fmt = format_of(args.out, args.format)
    wh = warehouse_of(args)
    result = export(wh, args.out, fmt, table=args.table, sql=args.sql, overwrite=args.overwrite,
                    batch_rows=args.batch_rows, progress=not args.quiet, memory_limit=args.memory_limit)
    print(f"wrote {result.rows} rows x {result.columns} columns to {args.out} ({fmt}, "
          f"{result.bytes / 1e6:.1f} MB) in {result.seconds:.1f} s", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a table, view or read-only query to VOTable, FITS, Parquet or CSV, with units and UCDs",
        description="Write a table, view or read-only SQL query to a file with each column's unit, UCD and "
                    "description: VOTable (BINARY2; FIELD unit/ucd/DESCRIPTION), FITS binary table (TUNITn, "
                    "TUCDn, TCOMMn), Parquet (field metadata and astropy's header) or CSV (ECSV: a commented "
                    "YAML header). Rows are streamed in batches; the file appears only when complete.")
    p.add_argument("table", nargs="?", help="a table or view (see `astrovision tables`); or use --sql")
    p.add_argument("--sql", help="a read-only SELECT query instead of a table name")
    p.add_argument("--format", "-f", choices=_FORMATS, help="default: from the suffix of --out")
    p.add_argument("--out", "-o", required=True, help="the file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--batch-rows", type=int, default=65_536, help="most rows read and written at once (fewer for wide rows: about 16 MiB a batch)")
    p.add_argument("--memory-limit", help="DuckDB memory limit for the query (e.g. 1GB; default DuckDB's)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export)
