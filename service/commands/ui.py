"""``astrovision ui``: the Dagster webserver on 127.0.0.1 over this warehouse's instance.

The webserver, its daemon and the code server run with the warehouse's Dagster home as their working
folder and ``PYTHONSAFEPATH=1``, so whatever folder the command is typed in, a file there named like
one of Dagster's dependencies (``gql.py``, ``yaml.py``) cannot shadow it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .home import warehouse_of

if TYPE_CHECKING:
    from warehouse import Warehouse

__all__ = ["register", "ui_command", "ui_env"]


def ui_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``dagster dev`` command line serving :mod:`dagster_project.definitions`.

    ``-P``: the interpreter does not put its working folder first on ``sys.path``; ``PYTHONSAFEPATH``
    (:func:`ui_env`) does the same for the processes ``dagster dev`` starts.
    """
    return [sys.executable, "-P", "-m", "dagster", "dev", "-m", "dagster_project.definitions",
            "-h", host, "-p", str(port)]


def ui_env(wh: Warehouse, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``dagster dev``: this warehouse, safe ``sys.path``, absolute ``PYTHONPATH``.

    Relative ``PYTHONPATH`` entries are made absolute against the caller's folder (the server runs in
    another one); empty entries, which mean "the working folder", are dropped.
    """
    env = dict(os.environ if environ is None else environ)
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(DAGSTER_HOME=str(wh.dagster_home), ASTROVISION_HOME=str(wh.root), PYTHONSAFEPATH="1")
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def _cmd_ui(args: argparse.Namespace) -> int:
    from dagster_project.runner import instance_for

    wh = warehouse_of(args)
    instance_for(wh)  # writes dagster.yaml under the root
    print(f"Dagster UI for {wh.root} on http://127.0.0.1:{args.port} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(ui_command(args.port), env=ui_env(wh), cwd=wh.dagster_home)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="open the Dagster UI (lineage, runs, re-materialize) on 127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=_cmd_ui)
