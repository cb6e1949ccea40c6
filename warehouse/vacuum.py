"""Vacuum: compact a table's fragments and delete what no kept version needs.

Every Lance commit is a new version, and old versions keep their files, so a table only grows; a writer
killed mid-write (``kill -9``, ``os._exit``) leaves files that no version references (a ``data/.tmp*``
file, data and transaction files). :func:`vacuum_table` does, per table, in this order:

1. **Pins.** Versions to keep are tagged ``pin-<name>`` (Lance tags; a tagged version survives every
   cleanup). Pins no longer asked for are removed, so their versions can go later.
2. **Compaction** (``dataset.optimize.compact_files()``): small fragments are rewritten into larger
   ones, in a new version. A conflict with a concurrent writer skips it (the report says so).
3. **Old versions** (``dataset.cleanup_old_versions(versions=[...])``): an unpinned version goes, with
   every file only it used, when it is older than ``older_than`` *and* was superseded more than
   ``grace`` ago. The second condition protects writers: a write in flight reads the version that was
   the latest when it began, and fails if that version's files vanish (measured: two writers beside
   a vacuum with no grace both failed with ``Not found: .../_deletions/...``).
4. **Leftovers of killed writes.** Lance lists the files that no version references
   (``explain_cleanup_old_versions`` with every version retained); those last modified more than
   ``grace`` ago are deleted. A younger file may belong to a write in flight, which Lance cannot tell
   apart from a dead one: its own ``delete_unverified`` deletes them whatever their age, and without
   it waits 7 days. Only listed files are deleted, so a file written after the listing is never touched.

The one rule behind ``grace`` (default 1 hour): no single read or write of a table lasts longer. With
``grace=0`` vacuum must run alone (no other process using the warehouse).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from warehouse.errors import WarehouseError, is_commit_conflict

if TYPE_CHECKING:
    from warehouse.store import TableStore

__all__ = ["DEFAULT_GRACE", "DEFAULT_OLDER_THAN", "PIN_PREFIX", "VacuumReport", "pin_name", "vacuum_table"]

log = logging.getLogger(__name__)

PIN_PREFIX = "pin-"
"""Lance tags made by :func:`vacuum_table` start with this; other tags are left alone."""

DEFAULT_OLDER_THAN = timedelta(days=7)
"""Versions younger than this stay, pinned or not (time travel over the last week)."""

DEFAULT_GRACE = timedelta(hours=1)
"""The longest a read or write may take: younger unreferenced files, and versions superseded more
recently, may be in use and stay."""

_KEEP_EVERY_VERSION = timedelta(days=365 * 100)
"""``older_than`` that no version reaches: the cleanup listing then holds only unreferenced files."""


def pin_name(name: str) -> str:
    """The Lance tag of a pin: ``pin-<name>`` with characters Lance refuses replaced by ``_``."""
    return PIN_PREFIX + re.sub(r"[^0-9A-Za-z._-]", "_", name)


@dataclass(frozen=True)
class VacuumReport:
    """What :func:`vacuum_table` did to one table.

    Attributes
    ----------
    table : str
    version : int
        The latest version afterwards (compaction adds one).
    fragments_before, fragments_after : int
        Fragments of the latest version before and after compaction.
    versions_removed : int
        Old versions deleted.
    bytes_removed : int
        Bytes of old versions' files deleted (leftovers not included).
    leftovers_removed : int
        Unreferenced files (killed writes) deleted.
    versions_kept_in_grace : int
        Old versions kept because they were superseded less than ``grace`` ago.
    leftovers_kept : int
        Unreferenced files younger than ``grace`` (perhaps a write in flight), kept.
    pinned : dict of str to int
        Pin tag -> version kept.
    missing_pins : dict of str to int
        Pins naming a version that no longer exists (nothing to keep).
    note : str
        Anything skipped, in words.
    """

    table: str
    version: int
    fragments_before: int
    fragments_after: int
    versions_removed: int
    versions_kept_in_grace: int
    bytes_removed: int
    leftovers_removed: int
    leftovers_kept: int
    pinned: dict[str, int] = field(default_factory=dict)
    missing_pins: dict[str, int] = field(default_factory=dict)
    note: str = ""


def _sync_pins(ds, wanted: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """Make the ``pin-*`` tags of a dataset exactly ``wanted``; returns (pinned, missing)."""
    existing = {t: int(info["version"]) for t, info in ds.tags.list().items() if t.startswith(PIN_PREFIX)}
    for tag, version in existing.items():
        if wanted.get(tag) != version:
            ds.tags.delete(tag)
    have = {int(v["version"]) for v in ds.versions()}
    pinned: dict[str, int] = {}
    missing: dict[str, int] = {}
    for tag, version in sorted(wanted.items()):
        if version not in have:
            missing[tag] = version
            continue
        if existing.get(tag) != version:
            ds.tags.create(tag, version)
        pinned[tag] = version
    return pinned, missing


def _leftovers(ds, fs, table_path: str, remote: bool) -> list[str]:
    """Files under the table that no version references, as Lance lists them (paths in ``fs``).

    Lance names a file by its object key (an object store, without the bucket) or its absolute path
    without the leading ``/`` (a local disk).
    """
    listing = ds.explain_cleanup_old_versions(older_than=_KEEP_EVERY_VERSION, delete_unverified=True,
                                              error_if_tagged_old_versions=False, include_files=True,
                                              max_files=1_000_000)
    if remote:
        bucket = table_path.split("/", 1)[0]
        root = table_path
        full = [f"{bucket}/{c.path.lstrip('/')}" for c in listing.candidate_files]
    else:
        root = str(Path(table_path).resolve())
        full = [str(Path("/" + c.path.lstrip("/")).resolve()) for c in listing.candidate_files]
    found = []
    for path in full:
        if path.startswith(root.rstrip("/") + "/"):
            found.append(path)
        else:
            log.warning("cleanup listed %s, outside %s; left alone", path, root)
    return found


def _old_versions(ds, older_than: timedelta, grace: timedelta) -> tuple[list[int], int]:
    """Unpinned versions older than ``older_than`` and superseded over ``grace`` ago; and how many only grace kept."""
    tagged = {int(info["version"]) for info in ds.tags.list().values()}
    history = sorted(ds.versions(), key=lambda v: v["version"])
    now = time.time()
    drop, in_grace = [], 0
    for this, successor in pairwise(history):
        if this["version"] in tagged or this["timestamp"].timestamp() > now - older_than.total_seconds():
            continue
        if successor["timestamp"].timestamp() > now - grace.total_seconds():
            in_grace += 1
            continue
        drop.append(int(this["version"]))
    return drop, in_grace


def vacuum_table(
    wh: TableStore,
    table: str,
    *,
    pins: Mapping[str, int] | None = None,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    grace: timedelta = DEFAULT_GRACE,
    compact: bool = True,
) -> VacuumReport:
    """Pin, compact, drop old versions and delete leftovers of killed writes in one table.

    Parameters
    ----------
    wh : TableStore
    table : str
    pins : mapping of str to int, optional
        Pin name -> version of this table to keep whatever its age (tagged ``pin-<name>``).
    older_than : timedelta
        Unpinned versions older than this are deleted (``timedelta(0)``: all but the latest), once
        superseded for ``grace``.
    grace : timedelta
        The longest a read or write may take (see the module notes); ``timedelta(0)`` only when
        nothing else uses the warehouse.
    compact : bool
        Rewrite small fragments first.

    Raises
    ------
    WarehouseError
        Unknown table, or a negative age.
    """
    if older_than < timedelta(0) or grace < timedelta(0):
        raise WarehouseError(f"vacuum ages must be >= 0, got older_than={older_than}, grace={grace}")
    ds = wh.dataset(table)
    pinned, missing = _sync_pins(ds, {pin_name(n): int(v) for n, v in (pins or {}).items()})
    before = len(ds.get_fragments())
    note = ""
    if compact:
        try:
            ds.optimize.compact_files()
        except (OSError, RuntimeError, ValueError) as exc:
            if not is_commit_conflict(exc):
                raise
            note = "compaction skipped: a concurrent write committed first; run vacuum again"
    ds = wh.dataset(table)
    after = len(ds.get_fragments())
    drop, in_grace = _old_versions(ds, older_than, grace)
    n_versions = n_bytes = 0
    if drop:
        stats = ds.cleanup_old_versions(versions=drop, error_if_tagged_old_versions=False)
        n_versions, n_bytes = int(stats.old_versions), int(stats.bytes_removed)
    cutoff = time.time() - grace.total_seconds()
    removed = kept = 0
    fs, lance_path = wh.filesystem()
    for path in _leftovers(ds, fs, f"{lance_path}/{table}.lance", wh.location.remote):
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            continue  # gone meanwhile (a temporary file renamed, or another vacuum)
        if info.mtime is not None and info.mtime.timestamp() > cutoff:
            kept += 1
            continue
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            continue
        removed += 1
    return VacuumReport(table, wh.dataset(table).version, before, after, n_versions, in_grace, n_bytes,
                        removed, kept, pinned, missing, note)
