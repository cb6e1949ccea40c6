"""Turn source batches into ``galaxies`` and ``images`` rows (plain functions, no Dagster)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from features.flags import Flag
from features.sources.base import GalaxyBatch, image_flags, image_sha1
from warehouse import schemas
from warehouse.images import encode_image

__all__ = ["ShardRows", "iter_shard_rows"]


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
