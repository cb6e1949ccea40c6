"""The leak check of a stored split set, against the duplicate groups the warehouse holds *now*.

``splits`` keeps a copy of each galaxy's ``duplicate_group`` from when the split set was built. A later
ingest can group a training galaxy with a test galaxy (a new near-duplicate pair across sources);
the copy does not know, so a check against it would pass a split that now leaks. Here the groups are
read from ``galaxies`` at its current version (a galaxy that left ``galaxies`` keeps its stored group).

Imports only numpy-level code (:mod:`models.splits`) and the warehouse's quoting, so the Dagster
checks can use it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.splits import check_no_leak
from warehouse.sqltext import quote

__all__ = ["current_groups", "split_leaks"]


def current_groups(wh: Any, galaxy_ids: Sequence[str]) -> dict[str, str | None]:
    """``galaxy_id -> duplicate_group`` from the current ``galaxies`` (ids not there are left out)."""
    if not wh.exists("galaxies"):
        return {}
    gal = wh.read("galaxies", columns=["galaxy_id", "duplicate_group"])
    wanted = set(galaxy_ids)
    return {g: d for g, d in zip(gal.column("galaxy_id").to_pylist(), gal.column("duplicate_group").to_pylist())
            if g in wanted}


def split_leaks(wh: Any, split_name: str, version: int | None = None) -> tuple[list[str], int]:
    """Leaks of the split set ``split_name`` (read at ``splits`` version ``version``) under today's groups.

    Returns
    -------
    problems : list of str
        One line per galaxy in two splits and per *current* duplicate group straddling two splits
        (:func:`models.splits.check_no_leak`); empty when the split set is clean.
    n_groups : int
        Duplicate groups checked.
    """
    rows = wh.read("splits", version=version, columns=["galaxy_id", "split", "duplicate_group"],
                   where=f"split_name = {quote(split_name)}").to_pydict()
    now = current_groups(wh, rows["galaxy_id"])
    groups = [now.get(g, stored) for g, stored in zip(rows["galaxy_id"], rows["duplicate_group"])]
    problems = check_no_leak(rows["galaxy_id"], rows["split"], groups)
    return problems, len({g for g in groups if g})
