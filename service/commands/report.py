"""``astrovision report --out PATH``: one self-contained static HTML page (maps, tables, contact sheet)."""

from __future__ import annotations

import argparse

from .home import warehouse_of

__all__ = ["register"]


def _cmd_report(args: argparse.Namespace) -> int:
    from stages.report import write_report

    path = write_report(warehouse_of(args), args.out)
    print(f"report written to {path} ({path.stat().st_size / 1e6:.1f} MB; opens in a browser, no server needed)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a static HTML report: embedding maps, correlations with physics, "
                                      "classifiers, calibration, contact sheet")
    p.add_argument("--out", required=True, help="the HTML file to write (its folder must exist)")
    p.set_defaults(func=_cmd_report)
