"""``astrovision ui``: the Dagster webserver on 127.0.0.1 over this warehouse's instance."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from warehouse import Warehouse

__all__ = ["register", "ui_command"]


def ui_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``dagster dev`` command line serving :mod:`dagster_project.definitions`."""
    return [sys.executable, "-m", "dagster", "dev", "-m", "dagster_project.definitions",
            "-h", host, "-p", str(port)]


def _cmd_ui(args: argparse.Namespace) -> int:
    from dagster_project.runner import instance_for

    wh = Warehouse.open()
    instance_for(wh)  # writes dagster.yaml under the root
    env = {**os.environ, "DAGSTER_HOME": str(wh.dagster_home), "ASTROVISION_HOME": str(wh.root)}
    print(f"Dagster UI for {wh.root} on http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(ui_command(args.port), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="open the Dagster UI (lineage, runs, re-materialize) on 127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=_cmd_ui)
