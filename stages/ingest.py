"""The ingest stage: a shard's ``galaxies`` / ``images`` (/ ``truth``) rows, and the duplicate groups.

Plain functions, no Dagster: :func:`ingest_shard` (the ``galaxies`` asset) and :func:`find_duplicate_groups`
(the ``duplicate_groups`` asset) read through a :class:`~warehouse.Warehouse`, call the sources' readers
and return typed results (:class:`IngestResult`, :class:`DuplicateGroupsResult`) that own the asset's
metadata keys.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from features.flags import Flag
from features.sources.base import GalaxyBatch, image_flags, image_sha1
from features.sources.sky import row_runs
from stages.progress import Progress
from stages.results import INTERNAL, StageResult
from stages.sources import shard_rows
from warehouse import quote, schemas
from warehouse.images import encode_image

if TYPE_CHECKING:
    from warehouse import Warehouse

__all__ = ["DuplicateGroupsResult", "IngestResult", "ShardRows", "find_duplicate_groups", "ingest_shard",
           "iter_shard_rows"]


@dataclass
class ShardRows:
    """The rows of one shard, column by column, plus summary counts for the asset metadata."""

    galaxies: dict[str, list] = field(default_factory=lambda: {n: [] for n in schemas.get("galaxies").columns.names})
    images: dict[str, list] = field(default_factory=lambda: {n: [] for n in schemas.get("images").columns.names})
    shapes: Counter = field(default_factory=Counter)
    dtypes: Counter = field(default_factory=Counter)
    image_bytes: int = 0

    def galaxies_table(self) -> pa.Table:
        spec = schemas.get("galaxies")
        return pa.table({f.name: pa.array(self.galaxies[f.name], f.type) for f in spec.columns})

    def images_table(self) -> pa.Table:
        spec = schemas.get("images")
        return pa.table({f.name: pa.array(self.images[f.name], f.type) for f in spec.columns})

    def __len__(self) -> int:
        return len(self.galaxies["galaxy_id"])


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _prepare(image: np.ndarray) -> tuple[np.ndarray, str, bytes, str, int]:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    encoding, data = encode_image(image)
    return image, encoding, data, image_sha1(image), image_flags(image)


def iter_shard_rows(batches: Iterable[GalaxyBatch], shard: str, *, chunk_rows: int = 256,
                    total: int | None = None, progress: bool = False,
                    threads: int | None = None,
                    on_progress: Callable[[int], None] | None = None) -> Iterator[ShardRows]:
    """Encode the images of a shard and yield its ``galaxies`` / ``images`` rows in chunks.

    Chunks of about ``chunk_rows`` galaxies keep memory bounded whatever the shard size: the caller
    writes each chunk's images and drops them before the next chunk is encoded.

    Parameters
    ----------
    batches : iterable of GalaxyBatch
        What the source yields for the shard's row range.
    shard : str
        The shard (partition) key stored with every row.
    total : int, optional
        Number of galaxies expected (for the progress bar).
    chunk_rows : int
        Yield a chunk once it holds at least this many galaxies.
    progress : bool
        Show a progress bar.
    threads : int, optional
        Threads encoding images (PNG compression and hashing release the GIL); default: the core count.
    on_progress : callable, optional
        Called with the number of galaxies of each batch once it is encoded (e.g. ``Progress.update``).
    """
    import json
    import os
    from concurrent.futures import ThreadPoolExecutor

    out = ShardRows()
    bar = tqdm(total=total, desc=f"ingest {shard}", unit="gal", disable=not progress)
    pool = ThreadPoolExecutor(threads or os.cpu_count() or 1)
    for batch in batches:
        if len(out) >= chunk_rows:
            yield out
            out = ShardRows()
        stretch = json.dumps(batch.stretch, sort_keys=True) if batch.stretch else None
        extras = batch.extra_json()
        prepared = list(pool.map(_prepare, batch.images))
        for i, gid in enumerate(batch.galaxy_ids):
            image, encoding, data, sha1, flags = prepared[i]
            if not (np.isfinite(batch.ra[i]) and np.isfinite(batch.dec[i])):
                flags |= int(Flag.POSITION_UNKNOWN)  # stored NULL; no sky pixel, cross-match or cone
            label = int(batch.labels[i])
            g = out.galaxies
            g["galaxy_id"].append(gid)
            g["source"].append(batch.source)
            g["native_id"].append(batch.native_ids[i])
            g["shard"].append(shard)
            g["row_index"].append(int(batch.row_index[i]))
            g["ra"].append(_finite_or_none(batch.ra[i]))
            g["dec"].append(_finite_or_none(batch.dec[i]))
            g["redshift"].append(_finite_or_none(batch.redshift[i]))
            g["pxscale"].append(_finite_or_none(batch.pxscale[i]))
            g["label"].append(label if label >= 0 else None)
            g["label_name"].append(batch.label_names[i] if label >= 0 else None)
            g["extra_json"].append(extras[i])
            g["image_sha1"].append(sha1)
            g["duplicate_group"].append(None)
            g["flags"].append(flags)
            m = out.images
            m["galaxy_id"].append(gid)
            m["shard"].append(shard)
            m["encoding"].append(encoding)
            m["data"].append(data)
            m["height"].append(image.shape[0])
            m["width"].append(image.shape[1])
            m["channels"].append(image.shape[2])
            m["dtype"].append(str(image.dtype))
            m["bands"].append(batch.bands)
            m["image_kind"].append(batch.image_kind)
            m["stretch_json"].append(stretch)
            out.shapes[str(image.shape)] += 1
            out.dtypes[str(image.dtype)] += 1
            out.image_bytes += len(data)
        bar.update(len(batch))
        if on_progress is not None:
            on_progress(len(batch))
    pool.shutdown()
    bar.close()
    if len(out):
        yield out


@dataclass(frozen=True)
class IngestResult(StageResult):
    """What :func:`ingest_shard` wrote for one shard (the ``galaxies`` asset's metadata)."""

    source: str
    source_kind: str
    rows: int
    row_range: str
    """The shard's row ranges in the source, ``[a, b)``, the first eight."""
    image_bytes_per_galaxy: float
    blank_images: int
    nan_images: int
    galaxies_per_second: float
    table_versions: dict[str, int] = field(default_factory=dict)
    expected_rows: int = field(default=0, metadata=INTERNAL)
    """Rows the shard should hold (its row range / HEALPix pixel)."""
    stored_rows: int = field(default=0, metadata=INTERNAL)
    unique_ids: int = field(default=0, metadata=INTERNAL)
    shapes: dict[str, int] = field(default_factory=dict, metadata=INTERNAL)
    dtypes: dict[str, int] = field(default_factory=dict, metadata=INTERNAL)


def ingest_shard(wh: Warehouse, shard: str, *, run_id: str | None = None,
                 log: Callable[[str], None] | None = None) -> IngestResult:
    """Read one shard from its registered source and write its ``images``, ``truth`` and ``galaxies`` rows.

    Every image is decoded and encoded before anything is written, so an unreadable image leaves every
    table as it was; only the encoded bytes are held (~140 KB a galaxy). Then ``images`` chunk by chunk
    (bounded Arrow buffers), then ``galaxies``, so a ``galaxies`` row always has its image. Duplicate
    groups found earlier are kept (the ``duplicate_groups`` asset refreshes them). ``log`` receives the
    progress lines (galaxies done / total, rate, ETA) of the image step (:class:`stages.progress.Progress`).
    """
    source, rows = shard_rows(wh, shard)  # a row range, or a HEALPix pixel's rows
    runs = row_runs(rows)
    t0 = time.perf_counter()
    with Progress(len(rows), f"images {shard}", log=log) as progress:
        parts = list(iter_shard_rows(source.iter_runs(runs), shard, total=len(rows), on_progress=progress.update))
    gal_parts: list[pa.Table] = []
    shapes: Counter = Counter()
    dtypes: Counter = Counter()
    image_bytes = 0
    while parts:
        part = parts.pop(0)
        wh.upsert("images", part.images_table(), run_id=run_id)
        gal_parts.append(part.galaxies_table())
        shapes.update(part.shapes)
        dtypes.update(part.dtypes)
        image_bytes += part.image_bytes
    elapsed = time.perf_counter() - t0
    gal = pa.concat_tables(gal_parts)
    n_rows = gal.num_rows
    if wh.exists("galaxies"):  # keep duplicate groups found earlier; duplicate_groups refreshes them
        old = wh.read("galaxies", columns=["galaxy_id", "duplicate_group"], where=f"shard = {quote(shard)}")
        groups = dict(zip(old.column("galaxy_id").to_pylist(), old.column("duplicate_group").to_pylist()))
        kept = [groups.get(g) for g in gal.column("galaxy_id").to_pylist()]
        gal = gal.set_column(gal.schema.get_field_index("duplicate_group"), "duplicate_group",
                             pa.array(kept, pa.string()))
    if hasattr(source, "truth_table"):
        wh.upsert("truth", pa.concat_tables([source.truth_table(a, b) for a, b in runs]), run_id=run_id)
    wh.upsert("galaxies", gal, run_id=run_id)

    ids = wh.read("galaxies", columns=["galaxy_id"], where=f"shard = {quote(shard)}").column("galaxy_id")
    flags = np.asarray(gal.column("flags").to_numpy(zero_copy_only=False), dtype=np.int64)
    return IngestResult(
        source=source.name,
        source_kind=source.kind,
        rows=n_rows,
        row_range=", ".join(f"[{a}, {b})" for a, b in runs[:8]) + (" ..." if len(runs) > 8 else ""),
        image_bytes_per_galaxy=image_bytes / max(n_rows, 1),
        blank_images=int(((flags & int(Flag.IMAGE_BLANK)) > 0).sum()),
        nan_images=int(((flags & int(Flag.IMAGE_NAN)) > 0).sum()),
        galaxies_per_second=n_rows / max(elapsed, 1e-9),
        table_versions=wh.versions(),
        expected_rows=len(rows),
        stored_rows=len(ids),
        unique_ids=len(pc.unique(ids)),
        shapes=dict(shapes),
        dtypes=dict(dtypes),
    )


@dataclass(frozen=True)
class DuplicateGroupsResult(StageResult):
    """What :func:`find_duplicate_groups` found and changed (the ``duplicate_groups`` asset's metadata)."""

    galaxies: int
    groups: int
    galaxies_in_groups: int
    rows_changed: int


def find_duplicate_groups(wh: Warehouse, *, run_id: str | None = None) -> DuplicateGroupsResult:
    """Group identical images and positions within 2 arcsec across all shards (``galaxies.duplicate_group``).

    Rows whose group or ``IMAGE_DUPLICATE`` bit changed are upserted; splits keep each group on one side,
    so near-duplicates cannot leak test images into training.
    """
    from features.sources.duplicates import group_duplicates

    gal = wh.read("galaxies")
    groups = group_duplicates(
        gal.column("galaxy_id").to_pylist(),
        gal.column("ra").to_numpy(zero_copy_only=False).astype(float),
        gal.column("dec").to_numpy(zero_copy_only=False).astype(float),
        gal.column("image_sha1").to_pylist(),
    )
    old = gal.column("duplicate_group").to_pylist()
    flags = gal.column("flags").to_numpy(zero_copy_only=False).astype(np.int64)
    dup_bit = int(Flag.IMAGE_DUPLICATE)
    new_flags = np.where([g is not None for g in groups], flags | dup_bit, flags & ~dup_bit)
    changed = np.array([a != b for a, b in zip(old, groups)]) | (new_flags != flags)
    if changed.any():
        upd = gal.filter(pa.array(changed))
        upd = upd.set_column(upd.schema.get_field_index("duplicate_group"), "duplicate_group",
                             pa.array([g for g, c in zip(groups, changed) if c], pa.string()))
        upd = upd.set_column(upd.schema.get_field_index("flags"), "flags",
                             pa.array(new_flags[changed], pa.int64()))
        wh.upsert("galaxies", upd.drop_columns(list(schemas.PROVENANCE_COLUMNS)), run_id=run_id)
    members = [g for g in groups if g is not None]
    return DuplicateGroupsResult(galaxies=len(groups), groups=len(set(members)),
                                 galaxies_in_groups=len(members), rows_changed=int(changed.sum()))
