"""Where a source's photometry comes from: its catalogue file (the demo writes its own), else SDSS."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import InputError
from warehouse import Warehouse, quote

if TYPE_CHECKING:
    from features.sources.synthetic import SyntheticSurvey

__all__ = ["catalogue_for_source", "demo_catalogue"]


def catalogue_for_source(wh: Warehouse, source: str, override: str = "") -> Path | None:
    """The catalogue file for a source (by name): ``override``, else ``photometry_catalog`` in its params_json.

    A relative path is looked up under the warehouse root, then the working directory. ``None`` means
    "use the SDSS service".

    Raises
    ------
    InputError
        If a named file does not exist (both places are named).
    """
    name = override
    if not name and wh.exists("sources"):
        rows = wh.read("sources", columns=["params_json"], where=f"source = {quote(source)}").to_pylist()
        if rows and rows[0]["params_json"]:
            try:
                name = json.loads(rows[0]["params_json"]).get("photometry_catalog") or ""
            except json.JSONDecodeError as exc:
                raise InputError(f"sources row {source!r}: params_json is not JSON: {exc}") from None
    if not name:
        return None
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [wh.local_root / path, Path.cwd() / path]
    for p in candidates:
        if p.is_file():
            return p
    raise InputError(f"photometry catalogue for source {source!r} not found: {', '.join(map(str, candidates))}")


def demo_catalogue(wh: Warehouse, survey: SyntheticSurvey) -> Path:
    """The demo survey's SDSS-like photometry catalogue, written once per (n, seed) under the cache.

    The demo has no SDSS counterpart, so the ``photometry`` asset cross-matches this file instead of
    querying SkyServer (:func:`features.sources.synthetic.write_photometry_catalogue`). The file is
    written under a temporary name and renamed, so two processes writing it at once never leave half a
    file.
    """
    from features.sources.synthetic import write_photometry_catalogue

    demo_dir = wh.cache_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    catalogue = demo_dir / f"sdss_like_n{len(survey)}_seed{survey.seed}.parquet"
    if not catalogue.exists():
        part = catalogue.with_name(f".{catalogue.stem}.{os.getpid()}.parquet")
        write_photometry_catalogue(survey, part)
        os.replace(part, catalogue)
    return catalogue
