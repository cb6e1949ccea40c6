"""``astrovision sql``, ``tables`` and ``show``: read the warehouse."""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import TYPE_CHECKING

from features.flags import describe
from warehouse.errors import WarehouseError

from .home import warehouse_of

if TYPE_CHECKING:
    import polars as pl

__all__ = ["format_frame", "register"]


def format_frame(df: pl.DataFrame, fmt: str) -> str:
    """Render a result as ``table`` (aligned text), ``csv`` (header line then rows) or ``json`` (records)."""
    import polars as pl

    if fmt == "csv":
        flat = [c for c, t in df.schema.items() if t.is_nested() or t in (pl.Binary, pl.Object)]
        if flat:
            raise WarehouseError(f"column {flat[0]!r} ({df.schema[flat[0]]}) cannot be written as CSV; "
                                 "use --format json, table or parquet, or cast it to VARCHAR")
        return df.write_csv()
    if fmt == "json":
        return json.dumps(df.to_dicts(), default=str, indent=None) + "\n"
    with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=60, tbl_width_chars=200):
        return f"{df}\n"


def _binary_to_len(df: pl.DataFrame) -> pl.DataFrame:
    """Replace binary columns by their byte length (images do not belong in a terminal)."""
    import polars as pl

    cols = [pl.col(c).bin.size().alias(f"{c}_bytes") if t == pl.Binary else pl.col(c)
            for c, t in df.schema.items()]
    return df.select(cols)


def _cut_note(limit: int | None) -> str:
    return f" (cut at the row limit {limit}; use --limit N, 0 for none)"


def _cmd_sql(args: argparse.Namespace) -> int:
    wh = warehouse_of(args)
    result = wh.sql_result(args.query, limit=args.limit or None)
    df = result.frame
    note = _cut_note(result.limit) if result.truncated else ""
    if args.format == "parquet":
        if not args.output:
            raise WarehouseError("--format parquet needs --output FILE")
        df.write_parquet(args.output)
        print(f"wrote {df.height} rows to {args.output}{note}", file=sys.stderr)
        return 0
    text = format_frame(df if args.format != "table" else _binary_to_len(df), args.format)
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(text)
        print(f"wrote {df.height} rows to {args.output}{note}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        if note:
            print(f"{df.height} rows{note}", file=sys.stderr)
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    import polars as pl

    from stages.records import table_summary

    wh = warehouse_of(args)
    rows = table_summary(wh)
    if not rows:
        print(f"no tables yet in {wh.root}; run `astrovision demo` or `astrovision ingest`")
        return 0
    sys.stdout.write(format_frame(pl.DataFrame(rows), args.format))
    return 0


def _write_rows(out: io.StringIO, table: str, rows: list[dict]) -> None:
    """One ``[table]`` block per row: a line per column, long lists summarised, flags decoded."""
    for row in rows:
        out.write(f"[{table}]\n")
        for key, value in row.items():
            if isinstance(value, list) and len(value) > 12:
                value = f"<{len(value)} values>"
            if key == "flags":
                value = f"{value} ({describe(value)})"
            out.write(f"  {key:<24} {value}\n")


def _cmd_show(args: argparse.Namespace) -> int:
    from stages.records import FIRST_TABLES, decoded_flags, galaxy_rows

    wh = warehouse_of(args)
    gid = args.galaxy_id
    out = io.StringIO()
    found = galaxy_rows(wh, gid)  # in record order: catalogue ... predictions, others, embedding_maps last
    for table in (t for t in found if t in FIRST_TABLES):
        _write_rows(out, table, found[table])
    out.write("[flags]\n")  # every table's decoded flags, next, as in the API's record
    for table, names in decoded_flags(found).items():
        out.write(f"  {table:<24} {', '.join(names) or 'ok'}\n")
    for table in (t for t in found if t not in FIRST_TABLES):
        _write_rows(out, table, found[table])
    sys.stdout.write(f"{gid}\n{out.getvalue()}")
    if args.png:
        from PIL import Image

        from features.pixels import model_input_uint8
        from stages.segmentation import stored_mask

        stamp = model_input_uint8(wh.read_image(gid))  # as the models see it
        found = stored_mask(wh, gid)
        if found is None:
            Image.fromarray(stamp).save(args.png)
            print(f"image written to {args.png} (no mask stored for {gid}: no outline drawn)")
        else:
            from features.segmentation import overlay_outline

            labels, name, version = found
            Image.fromarray(overlay_outline(stamp, labels)).save(args.png)
            print(f"image written to {args.png} with the outline of the {name} v{version} mask "
                  "(green: galaxy, magenta: bulge)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sql", help="run a read-only SQL query over the tables and views")
    p.add_argument("query")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--output", "-o", help="write to this file instead of stdout")
    p.add_argument("--limit", type=int, default=10_000, help="row limit (0: none)")
    p.set_defaults(func=_cmd_sql)

    t = sub.add_parser("tables", help="list the tables with their rows and Lance version")
    t.add_argument("--format", choices=["table", "csv", "json"], default="table")
    t.set_defaults(func=_cmd_tables)

    s = sub.add_parser("show", help="everything stored about one galaxy")
    s.add_argument("galaxy_id")
    s.add_argument("--png", help="also write its image to this PNG (with its stored mask's outline, if any)")
    s.set_defaults(func=_cmd_show)
