"""Register a named source in the warehouse, find the source of a shard, replace a source, lock one.

A source is registered under its NAME (the ``source`` key of the ``sources`` table, the prefix of its
galaxy ids and shard keys) with its kind, path and :meth:`~features.sources.Source.fingerprint`.
Registering a name again is an idempotent re-ingest when kind, path and fingerprint are the same; for
different data it is refused unless ``replace=True``, which first deletes the old source's rows from
every per-galaxy table. :func:`source_lock` serialises the ingests of one name across processes (a
file lock under ``<local>/locks/``); ingests of different names run side by side.

A source is cut into shards (Dagster partitions) by row index, ``shard_size`` rows each
(``<name>-00003``), or by sky position (``healpix_nside``): one shard per HEALPix pixel holding
galaxies, ``<name>-hpx<nside>-<pixel>`` (:mod:`features.sources.sky`), so one region can be
materialized again on its own (:func:`sky_shards_in_cone`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import InputError
from features.sources import Source, check_source_name, make_source, shard_key, shard_range
from features.sources.sky import (
    check_nside,
    cone_pixels,
    healpix_pixels,
    parse_sky_shard,
    pixel_rows,
    sky_shard_key,
)
from warehouse import Warehouse, quote
from warehouse.locks import file_lock

__all__ = [
    "HELD_LOCKS_ENV",
    "held_by_ancestor",
    "ingested_shards",
    "register_source",
    "registered_source",
    "remove_source_rows",
    "shard_keys",
    "shard_rows",
    "sky_shard_keys",
    "sky_shards_in_cone",
    "source_for_shard",
    "source_lock",
    "source_locks",
]

HEALPIX_PARAM = "healpix_nside"
"""The ``params_json`` key of a sky-partitioned source (not a parameter of its reader)."""


def shard_keys(name: str, n: int, shard_size: int) -> list[str]:
    """The shard keys covering ``n`` galaxies of source ``name``: ``<name>-00000``, ``<name>-00001``, ..."""
    return [shard_key(name, i) for i in range(math.ceil(n / shard_size))]


def sky_shard_keys(source: Source, nside: int) -> list[str]:
    """The sky shard keys of a source: one per NESTED HEALPix pixel holding at least one galaxy, sorted."""
    ra, dec = source.positions()
    pixels = np.unique(healpix_pixels(ra, dec, nside))
    return [sky_shard_key(source.name, nside, int(p)) for p in pixels]


def registered_source(wh: Warehouse, name: str) -> dict[str, Any] | None:
    """The ``sources`` row of a name, or None when it is not registered."""
    if not wh.exists("sources"):
        return None
    rows = wh.read("sources", where=f"source = {quote(name)}").to_pylist()
    return rows[0] if rows else None


def _resolved(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    if old["kind"] != new["kind"]:
        out.append(f"kind {old['kind']} -> {new['kind']}")
    if old["path"] != new["path"]:
        out.append(f"path {old['path']} -> {new['path']}")
    if old["fingerprint"] != new["fingerprint"]:
        out.append("content checksum differs")
    return out


def register_source(
    wh: Warehouse,
    source: Source,
    *,
    path: str | None = None,
    catalog: str | None = None,
    shard_size: int | None = None,
    params: dict[str, Any] | None = None,
    replace: bool = False,
    healpix_nside: int | None = None,
) -> list[str]:
    """Validate a source, record it under its name in the ``sources`` table and return its shard keys.

    Validation runs first, so a bad input leaves the warehouse exactly as it was. Callers that may run
    beside another ingest of the same name hold :func:`source_lock` around this and the shards' runs.

    Parameters
    ----------
    wh : Warehouse
    source : Source
        Its :attr:`~features.sources.Source.name` is the key.
    path, catalog : str, optional
        Where the data is (default: the source's own ``describe()`` values); stored resolved.
    shard_size : int, optional
        Galaxies per shard (default the source's); must match an existing registration of the same data.
    params : dict, optional
        More parameters to store (merged over ``source.describe()``).
    replace : bool
        Register different data under an existing name: the old source's rows are deleted from every
        per-galaxy table first (:func:`remove_source_rows`).
    healpix_nside : int, optional
        Partition by sky position instead of row index: one shard per HEALPix pixel at this ``nside``
        (a power of two) holding galaxies (:func:`sky_shard_keys`); ``shard_size`` is then unused.

    Raises
    ------
    InputError
        Bad input (from ``source.validate()``), no galaxies, a non-positive shard size, the name already
        registered for different data (kind, path or content checksum) without ``replace``, or with
        another shard size or partitioning; an ``nside`` that is not a power of two.
    """
    name = check_source_name(source.name)
    nside = None if healpix_nside is None else check_nside(healpix_nside)
    source.validate()
    n = len(source)
    described = source.describe()
    path = _resolved(path or described.get("path"))
    if n == 0:
        raise InputError(f"source {name!r} at {path} holds no galaxies")
    size = int(shard_size or source.default_shard_size)
    if size <= 0:
        raise InputError(f"--shard-size must be positive, got {size}")
    row = {
        "source": name,
        "kind": source.kind,
        "path": path,
        "catalog": _resolved(catalog or described.get("catalog")),
        "fingerprint": source.fingerprint(),
        "shard_size": size,
        "n_galaxies": n,
        "params_json": json.dumps({**described, **(params or {}), **({HEALPIX_PARAM: nside} if nside else {})},
                                  sort_keys=True),
    }
    old = registered_source(wh, name)
    if old is not None and replace:
        remove_source_rows(wh, name)
    elif old is not None:
        diff = _differences(old, row)
        if diff:
            where = f" at {old['path']}" if old["path"] else ""
            raise InputError(
                f"source name {name!r} is already registered for {old['kind']}{where} "
                f"({old['n_galaxies']} galaxies) and this is different data ({'; '.join(diff)}): ingest it "
                f"under another name with --name NAME, or pass --replace to delete the rows of {name!r} "
                "and ingest this instead"
            )
        old_nside = _nside(old)
        if old_nside != nside:
            raise InputError(
                f"source {name!r} is already ingested with {_partitioning(old_nside)}; use the same "
                f"partitioning (--healpix-nside), or --replace to ingest it again with {_partitioning(nside)}"
            )
        if nside is None and int(old["shard_size"]) != size:
            raise InputError(
                f"source {name!r} is already ingested with shard size {old['shard_size']}; "
                "use the same --shard-size, or --replace to ingest it again"
            )
    keys = sky_shard_keys(source, nside) if nside else shard_keys(name, n, size)
    wh.upsert("sources", [row])
    return keys


def _partitioning(nside: int | None) -> str:
    return f"HEALPix nside {nside}" if nside else "row shards"


def _nside(row: dict[str, Any]) -> int | None:
    """The HEALPix nside a ``sources`` row is partitioned by (None: row shards)."""
    try:
        value = json.loads(row["params_json"] or "{}").get(HEALPIX_PARAM)
    except json.JSONDecodeError:
        return None
    return int(value) if value else None


def remove_source_rows(wh: Warehouse, name: str) -> dict[str, int]:
    """Delete every row of source ``name`` from every table keyed by ``galaxy_id``; rows deleted per table.

    The ``sources`` row itself stays (a new registration overwrites it). Models trained on the old rows
    keep their registry rows and recorded table versions; the Dagster partitions of the old shard keys
    stay listed.
    """
    where = f"starts_with(galaxy_id, {quote(check_source_name(name) + ':')})"
    deleted: dict[str, int] = {}
    for table in wh.tables():
        if "galaxy_id" not in wh.dataset(table).schema.names:
            continue
        n = wh.count(table, where)
        if n:
            wh.delete(table, where)
            deleted[table] = n
    return deleted


def _shard_source(wh: Warehouse, shard: str) -> tuple[Source, dict[str, Any]]:
    name = shard.split("-", 1)[0]
    row = registered_source(wh, name)
    if row is None:
        raise InputError(f"shard {shard!r}: source {name!r} is not registered; run `astrovision ingest` first")
    params = {k: v for k, v in json.loads(row["params_json"] or "{}").items()
              if k not in ("path", "catalog", HEALPIX_PARAM)}
    return make_source(row["kind"], path=row["path"], catalog=row["catalog"], name=name, **params), row


def source_for_shard(wh: Warehouse, shard: str) -> tuple[Source, int, int]:
    """The source a row shard belongs to, rebuilt from its ``sources`` row, and the shard's row range.

    A sky shard has rows, not a range: see :func:`shard_rows`.
    """
    source, row = _shard_source(wh, shard)
    if parse_sky_shard(shard) is not None:
        raise InputError(f"shard {shard!r} is a sky shard (a HEALPix pixel), not a row range")
    start, stop = shard_range(shard, int(row["shard_size"]), int(row["n_galaxies"]))
    if start >= stop:
        raise InputError(f"shard {shard!r} is empty: the source {source.name!r} has {row['n_galaxies']} galaxies")
    return source, start, stop


def ingested_shards(wh: Warehouse, wanted: Sequence[str] | None = None) -> list[str]:
    """The shards a command runs on: every ingested shard, sorted, or ``wanted`` once each is known.

    The one shard-resolving step of the CLI commands that run per-shard assets (``embed``,
    ``photometry match``, ``materialize``).

    Raises
    ------
    features.errors.InputError
        Nothing ingested yet, or a wanted shard that ``galaxies`` does not hold (the known ones named).
    """
    if not wh.exists("galaxies"):
        raise InputError(f"no galaxies in {wh.root}; run `astrovision ingest` or `astrovision demo` first")
    known = sorted(set(wh.read("galaxies", columns=["shard"]).column("shard").to_pylist()))
    unknown = sorted(set(wanted or ()) - set(known))
    if unknown:
        raise InputError(f"unknown shard(s) {unknown}; known: {known}")
    return list(wanted) if wanted else known


def shard_rows(wh: Warehouse, shard: str) -> tuple[Source, np.ndarray]:
    """The source of any shard and the rows (ascending source row indices) it holds.

    A row shard holds its ``[start, stop)`` range; a sky shard ``<name>-hpx<nside>-<pixel>`` the
    rows whose position falls in that HEALPix pixel (recomputed from the source's positions, which
    its fingerprint pins).

    Raises
    ------
    InputError
        Unknown source, an empty shard, or a sky shard at another nside than the source's.
    """
    sky = parse_sky_shard(shard)
    if sky is None:
        source, start, stop = source_for_shard(wh, shard)
        return source, np.arange(start, stop, dtype=np.int64)
    source, row = _shard_source(wh, shard)
    _, nside, pixel = sky
    if _nside(row) != nside:
        raise InputError(f"shard {shard!r}: source {source.name!r} is partitioned by {_partitioning(_nside(row))}")
    ra, dec = source.positions()
    rows = pixel_rows(ra, dec, nside, pixel)
    if rows.size == 0:
        raise InputError(f"shard {shard!r} is empty: no galaxy of {source.name!r} lies in HEALPix pixel {pixel}")
    return source, rows


def sky_shards_in_cone(wh: Warehouse, ra: float, dec: float, radius_arcsec: float) -> list[str]:
    """The sky shards of every sky-partitioned source that overlap a cone (a region to materialize again).

    Raises
    ------
    InputError
        No source is partitioned by sky position, or the cone is not on the sky.
    """
    if not wh.exists("sources"):
        raise InputError("no source is registered; run `astrovision ingest` first")
    keys: list[str] = []
    partitioned = False
    for row in wh.read("sources", columns=["source", "params_json"]).to_pylist():
        nside = _nside(row)
        if nside:
            partitioned = True
            keys += [sky_shard_key(row["source"], nside, int(p)) for p in cone_pixels(ra, dec, radius_arcsec, nside)]
    if not partitioned:
        raise InputError("no source is partitioned by sky position; ingest one with --healpix-nside N")
    return keys


HELD_LOCKS_ENV = "ASTROVISION_SOURCE_LOCKS_HELD"
"""Environment variable naming the source locks a process holds, for its child processes (run and step
processes, Dask workers of a local cluster): JSON ``[[host, pid, start time, name], ...]``."""


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _lineage() -> set[int]:
    """This process's id and those of its ancestors."""
    import psutil

    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def _held_entries() -> list[list]:
    try:
        entries = json.loads(os.environ.get(HELD_LOCKS_ENV, "[]"))
    except json.JSONDecodeError:
        return []
    return [e for e in entries if isinstance(e, list) and len(e) == 4] if isinstance(entries, list) else []


def held_by_ancestor(name: str) -> bool:
    """Whether this process or one of its ancestors holds the source lock of ``name`` right now.

    Told by :data:`HELD_LOCKS_ENV`, which :func:`source_lock` sets while it holds a lock, and checked:
    on this host the holder must be alive (same start time, so not a reused id) and this process or
    an ancestor of it; an entry from another host (a Dask worker there) is trusted as given.
    """
    import socket

    host = socket.gethostname()
    lineage: set[int] | None = None
    for e_host, pid, start, e_name in _held_entries():
        if e_name != name:
            continue
        if e_host != host:
            return True
        lineage = _lineage() if lineage is None else lineage
        if int(pid) in lineage and _process_start(int(pid)) == start:
            return True
    return False


def _mark_held(name: str, held: bool) -> None:
    import socket

    entries = [e for e in _held_entries() if not (e[1] == os.getpid() and e[3] == name)]
    if held:
        entries.append([socket.gethostname(), os.getpid(), _process_start(os.getpid()), name])
    if entries:
        os.environ[HELD_LOCKS_ENV] = json.dumps(entries)
    else:
        os.environ.pop(HELD_LOCKS_ENV, None)


@contextmanager
def source_locks(wh: Warehouse, names: Iterable[str], *, timeout: float | None = None,
                 on_wait: Callable[[str], None] | None = None) -> Iterator[list[str]]:
    """Hold the source lock of every name in ``names`` that no ancestor process holds already.

    What a Dagster run takes for the shards it writes (:class:`dagster_project.resources.WarehouseResource`),
    whoever launched it: the UI, the API, or the CLI (whose own lock its run and step processes see
    through :func:`held_by_ancestor`, so they do not wait for their parent). Names are locked in sorted
    order, so two runs over the same sources cannot deadlock.

    Yields
    ------
    list of str
        The names locked here (not those an ancestor holds).
    """
    with ExitStack() as stack:
        taken = []
        for name in sorted(set(names)):
            if not held_by_ancestor(name):
                stack.enter_context(source_lock(wh, name, timeout=timeout, on_wait=on_wait))
                taken.append(name)
        yield taken


@contextmanager
def source_lock(wh: Warehouse, name: str, *, timeout: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the ingest lock of source ``name`` (``<root>/locks/source-<name>.lock``) for the ``with`` body.

    A second process asking for the same name waits until the first releases it (its ingest is then an
    idempotent re-ingest); ingests of other names do not wait. Every Dagster run writing a shard takes
    the same lock (:func:`source_locks`), unless this process, its parent, holds it: the holder is
    named in :data:`HELD_LOCKS_ENV` for child processes while the body runs.

    Parameters
    ----------
    timeout : float, optional
        Seconds to wait for another holder; None waits as long as it takes.
    on_wait : callable, optional
        Told once, in one line, when the lock is held by someone else and this call waits.

    Raises
    ------
    InputError
        The lock is still held after ``timeout`` seconds.
    """
    from filelock import Timeout

    lock = file_lock(wh.local_root, f"source-{check_source_name(name)}")
    path = Path(lock.lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"source {name!r} is being ingested by another process; waiting for it (lock {path})")
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise InputError(
                f"source {name!r} is still being ingested by another process after {timeout:g} s "
                f"(lock {path}); try again when it has finished"
            ) from None
    _mark_held(name, True)
    try:
        yield path
    finally:
        _mark_held(name, False)
        lock.release()
