"""``astrovision download-galaxy10``: fetch Galaxy10 DECaLS with progress, resume and checksum."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _cmd_download(args: argparse.Namespace) -> int:
    from features.sources.galaxy10 import download

    path = download(args.dest, timeout=args.timeout)
    print(f"verified {path}; ingest it with: astrovision ingest --source galaxy10 --path {path} --all")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download-galaxy10", help="download Galaxy10_DECals.h5 (2.5 GB) from Zenodo")
    p.add_argument("dest", help="a directory or the file path to write")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before an unreachable server is an error")
    p.set_defaults(func=_cmd_download)
