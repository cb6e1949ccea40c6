"""The ``astrovision`` command.

Each module in :mod:`service.commands` adds its sub-commands through ``register(subparsers)`` and
sets ``func(args) -> int`` on its parser. User errors (bad input, a bad query, missing data) exit 2
with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import pkgutil
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from features.errors import InputError
from service import commands as _commands
from warehouse.errors import WarehouseError

__all__ = ["USER_ERRORS", "build_parser", "main", "quick_exit", "run"]

USER_ERRORS: tuple[type[BaseException], ...] = (InputError, WarehouseError, FileNotFoundError)
"""Exceptions that are the user's to fix: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="astrovision",
        description="A feature store and embedding database for galaxy morphology.",
    )
    parser.add_argument(
        "--home",
        default=None,
        help="warehouse root, a directory or s3://BUCKET/PREFIX (default: $ASTROVISION_HOME or ./astrovision-data)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{_commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astrovision`` console script.

    The settings (:class:`warehouse.settings.AstroSettings`: ``--home`` over ``$ASTROVISION_HOME``) are
    resolved once and put on ``args.settings``; this process's environment is left as it was.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from warehouse.settings import AstroSettings  # pydantic-settings: not paid by --help

    try:
        # resolved once, here, and handed to the command on args (never written into os.environ)
        args.settings = AstroSettings.resolve(args.home)
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"astrovision: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("astrovision: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`astrovision plan | head`): stop quietly, as cat does
        # stdout points at nothing from here, so the interpreter's last flush cannot raise again
        # (the recipe of the Python docs' "Note on SIGPIPE")
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def quick_exit(code: int) -> NoReturn:
    """End the process with ``code`` as the interpreter would, without its last step.

    Python's own exit waits for the non-daemon threads, runs the ``atexit`` handlers, flushes the
    standard streams, and then tears down every module and object it holds. With torch, Dagster, Lance
    and umap loaded, that teardown alone took 2.5-3 s of one core on the development machine, at the end
    of every pipeline command, with nothing left to write. The first three steps are done here, in that
    order; then :func:`os._exit` ends the process.
    """
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter calls first (joins threads)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # the reader went away, or the stream was closed
            code = code or 141
    os._exit(code)


def run() -> NoReturn:
    """The ``astrovision`` console script: :func:`main`, then :func:`quick_exit` with its status."""
    quick_exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
