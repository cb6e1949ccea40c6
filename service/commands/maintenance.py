"""``astrovision vacuum``: Lance compaction and cleanup, keeping every version a registered model names.

Runs the Dagster job ``vacuum`` in process over the instance under the warehouse root, so the run
shows in ``astrovision ui`` like every other write.

Examples::

    astrovision vacuum                    # versions older than 7 days, leftovers older than 1 h
    astrovision vacuum --older-than 0     # every unpinned version but the latest (superseded > 1 h ago)
    astrovision vacuum --older-than 0 --grace 0   # right after a crash, with nothing else running
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

from features.errors import InputError
from warehouse.errors import WarehouseError

from .home import warehouse_of

__all__ = ["parse_age", "register"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    """``"0"``, ``"90s"``, ``"30m"``, ``"36h"``, ``"7d"`` (a number and a unit) as a timedelta.

    Raises
    ------
    InputError
        Anything else, e.g. a bare number other than 0 (hours or days?) or a negative age.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([smhd]?)\s*", text)
    if not match or (not match.group(2) and float(match.group(1)) != 0):
        raise InputError(f"age {text!r}: give a number and a unit s, m, h or d (e.g. 36h, 7d), or 0")
    return timedelta(**{_UNITS[match.group(2) or "s"]: float(match.group(1))})


def _failure(result) -> str:
    """The first failed step's error below Dagster's wrappers, in one line."""
    for event in result.get_step_failure_events():
        err = event.step_failure_data.error
        while err is not None and (err.cls_name or "").startswith("Dagster") and err.cause is not None:
            err = err.cause
        lines = (err.message or "").strip().splitlines() if err is not None else []
        return lines[-1] if lines else "failed"
    return "failed"


def _cmd_vacuum(args: argparse.Namespace) -> int:
    from dagster_project.definitions import defs
    from dagster_project.resources import WarehouseResource
    from dagster_project.runner import instance_for

    older, grace = parse_age(args.older_than), parse_age(args.grace)
    wh = warehouse_of(args)
    unknown = sorted(set(args.table or []) - set(wh.tables()))
    if unknown:
        raise WarehouseError(f"no table {', '.join(unknown)} in {wh.root} (tables: {', '.join(wh.tables()) or 'none'})")
    config = {"older_than_hours": older / timedelta(hours=1), "grace_hours": grace / timedelta(hours=1),
              "compact": not args.no_compact, "tables": args.table or None}
    result = defs.get_job_def("vacuum").execute_in_process(
        run_config={"ops": {"vacuum_warehouse": {"config": config}}, "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        instance=instance_for(wh), resources={"warehouse": WarehouseResource(root=str(wh.root))},
        raise_on_error=False, tags={"astrovision/trigger": "cli"},
    )
    if not result.success:
        raise WarehouseError(f"vacuum failed (Dagster run {result.run_id}): {_failure(result)}")
    from stages.maintenance import VacuumResult
    from warehouse.vacuum import VacuumReport

    rows = VacuumResult(tuple(VacuumReport(**r) for r in result.output_for_node("vacuum_warehouse"))).reports
    if not rows:
        print(f"no tables yet in {wh.root}")
        return 0
    import polars as pl

    frame = pl.DataFrame([{"table": r.table, "version": r.version,
                           "fragments": f"{r.fragments_before} -> {r.fragments_after}",
                           "old versions removed": r.versions_removed, "bytes removed": r.bytes_removed,
                           "leftovers removed": r.leftovers_removed, "leftovers kept": r.leftovers_kept,
                           "pinned versions": len(r.pinned)} for r in rows])
    with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True,
                   tbl_width_chars=200):
        print(frame)
    for r in rows:
        for tag, version in r.missing_pins.items():
            print(f"{r.table}: {tag} names version {version}, which no longer exists", file=sys.stderr)
        if r.leftovers_kept:
            print(f"{r.table}: kept {r.leftovers_kept} unreferenced file(s) younger than the grace "
                  f"{args.grace} (a write may be in flight)", file=sys.stderr)
        if r.versions_kept_in_grace:
            print(f"{r.table}: kept {r.versions_kept_in_grace} old version(s) superseded within the grace "
                  f"{args.grace} (a read or write may still use them)", file=sys.stderr)
        if r.note:
            print(f"{r.table}: {r.note}", file=sys.stderr)
    print(f"vacuum: Dagster run {result.run_id}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``vacuum`` to the CLI."""
    p = sub.add_parser("vacuum", help="compact tables, delete old versions and leftovers of killed writes "
                                      "(keeps every version a registered model names)")
    p.add_argument("--older-than", default="7d",
                   help="delete unpinned versions older than this (default 7d; 0: all but the latest)")
    p.add_argument("--grace", default="1h",
                   help="the longest a read or write may take (default 1h): younger leftovers and versions "
                        "superseded more recently stay; 0 only when nothing else uses the warehouse")
    p.add_argument("--table", action="append", help="only this table (repeatable); default all")
    p.add_argument("--no-compact", action="store_true", help="skip compaction")
    p.set_defaults(func=_cmd_vacuum)
