"""Embeddings stage: load the configured encoder once, embed a shard, upsert ``embeddings_<encoder>``.

No Dagster here: the ``embeddings`` asset calls these functions, and ``astrovision embed`` resolves its
encoder with :func:`get_encoder` before it launches that asset's runs (so it can say which encoder it
uses, and why, before the first shard).
"""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from features.embeddings import (
    BASELINE_SAMPLE,
    DEFAULT_SSL_ENCODER,
    ENCODERS,
    Encoder,
    choose_default_encoder,
    embed_images,
    image_flags,
    in_baseline_sample,
    load_encoder,
)
from features.errors import InputError
from features.parallel import step_cores
from warehouse import Warehouse, quote
from warehouse.schemas.embeddings import embedding_spec, embedding_table

__all__ = ["NORM_MAX", "NORM_MIN", "ChosenEncoder", "ShardEmbedding", "auto_encoders", "embed_query_image", "embed_shard",
           "get_encoder", "shard_ids", "vector_stats"]

NORM_MIN = 1e-3
"""The ``norms_in_range`` check fails for a CLS vector shorter than this (a collapsed output)."""

NORM_MAX = 1e4
"""... or longer than this (a numerical blow-up). DINOv2 / random ViT-S CLS norms are O(10-100)."""

READ_CHUNK = 512
"""Images decoded at a time (bounded memory for large shards)."""

_ENCODERS: dict[tuple[str, str], Encoder] = {}
"""Encoders loaded in this process, by (name, weights file): each shard's run reuses them. ``auto`` and
the name it resolves to share an entry (both look for the weights in the same places)."""


def get_encoder(name: str, weights_path: str = "", allow_download: bool = True,
                wh: Warehouse | None = None) -> tuple[Encoder, str]:
    """The encoder a config names (loaded once per process), and a sentence saying which and why.

    Parameters
    ----------
    name : str
        A registered encoder, ``hf_hub:<owner>/<repo>``, ``timm:<model>``, or ``"auto"``: an in-domain
        (Zoobot) encoder, else DINOv2 ViT-S/14, when their weights resolve, else the named
        ``random_vits14`` baseline (:func:`features.embeddings.choose_default_encoder`).
    weights_path : str
        Local weights file in timm's layout; empty: resolve them (for an encoder trained in the
        warehouse, ``ssl_resnet18``: its file under the root of ``wh``, :func:`stages.ssl.ssl_weights`).
    allow_download : bool
        Whether weights may be downloaded from the Hugging Face Hub.
    wh : Warehouse, optional
        Needed for an encoder trained in the warehouse without ``weights_path``.

    Raises
    ------
    features.errors.OfflineError
        A named encoder's weights are neither local nor downloadable.
    models.errors.MissingInputError
        An encoder trained in the warehouse that has not been trained there yet.
    """
    note = ""
    weights = None
    if name == "auto":
        choice = choose_default_encoder(weights_path or None, allow_download=allow_download)
        name, weights, note = choice.name, choice.weights, choice.reason
    spec = ENCODERS.get(name)
    if spec is not None and spec.trained_here and not weights_path:
        from stages.ssl import ssl_weights

        if wh is None:
            raise InputError(f"encoder {name!r} is trained in a warehouse: name the warehouse or its weights file")
        weights = ssl_weights(wh, name)
    key = (name, weights_path or (f"{weights.path}:{weights.sha256}" if weights is not None else ""))
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(name, weights_path or None, weights=weights, allow_download=allow_download)
    enc = _ENCODERS[key]
    return enc, note or f"encoder {enc.name}, weights from {enc.weights_origin}"


@dataclass(frozen=True)
class ChosenEncoder:
    """An encoder the ``embeddings`` asset computes, the sentence saying why, and its sample."""

    encoder: Encoder
    note: str
    sample: int = 0
    """Expected galaxies embedded (:func:`features.embeddings.in_baseline_sample`); 0: every galaxy."""


def auto_encoders(wh: Warehouse, weights_path: str = "", allow_download: bool = True,
                  baseline_sample: int = BASELINE_SAMPLE) -> list[ChosenEncoder]:
    """What ``encoder="auto"`` of the ``embeddings`` asset computes, each with its sentence.

    An in-domain pretrained encoder (Zoobot's, :mod:`features.hub_encoders`) alone when its weights
    resolve; else DINOv2 ViT-S/14 alone when its weights resolve; otherwise the warehouse's own self-supervised
    encoder (``ssl_resnet18``, when the ``ssl_encoder`` asset has trained it here) and, beside it, the
    ``random_vits14`` baseline every result is compared with, on a hash sample of about
    ``baseline_sample`` galaxies (:data:`features.embeddings.BASELINE_SAMPLE`; 0: all). When nothing
    else is available the baseline is the encoder in use and embeds every galaxy. Never silent: each
    sentence says which and why.
    """
    from stages.ssl import read_record

    choice = choose_default_encoder(weights_path or None, allow_download=allow_download)
    if not choice.is_random:
        enc, _ = get_encoder(choice.name, weights_path if choice.name == "dinov2_vits14" else "", allow_download)
        return [ChosenEncoder(enc, str(choice))]
    record = read_record(wh, DEFAULT_SSL_ENCODER)
    if record is None:
        enc, _ = get_encoder("random_vits14", "", allow_download)
        return [ChosenEncoder(enc, choice.reason)]
    ssl, _ = get_encoder(DEFAULT_SSL_ENCODER, "", allow_download, wh)
    base, _ = get_encoder("random_vits14", "", allow_download)
    n = wh.count("galaxies")
    sample = baseline_sample if 0 < baseline_sample < n else 0
    where = (f"on a hash sample of about {sample:,} of the {n:,} galaxies (baseline_sample; 0: all)" if sample
             else f"on all {n:,} galaxies")
    return [ChosenEncoder(ssl, f"encoder {ssl.name}: no in-domain (Zoobot) and no DINOv2 weights here, so the "
                               f"encoder self-supervised on this warehouse's {record['n_images']} galaxies "
                               f"(SimCLR, start: {record['init']}) is used; random_vits14 is computed beside it "
                               "as the baseline"),
            ChosenEncoder(base, "encoder random_vits14: the random-weights baseline (flag RANDOM_WEIGHTS), computed "
                                f"for comparison {where}", sample)]


def embed_query_image(wh: Warehouse, image: str | os.PathLike[str] | np.ndarray, encoder: str | None = None,
                      weights_path: str | None = None, *, allow_download: bool = True) -> tuple[np.ndarray, str]:
    """Embed a query image with the encoder (and the same weights) that made the table it is compared with.

    Used by ``astrovision similar --image`` and the HTTP service's ``POST /similar``.

    Parameters
    ----------
    image : path or numpy.ndarray
        An image file (PNG/JPEG/FITS, read by :func:`features.embeddings.load_image_file`, so a file
        gives the vector of its stored copy) or pixels already read that way.
    encoder : str, optional
        Which ``embeddings_<encoder>`` table (:func:`warehouse.search.pick_table`).
    weights_path : str, optional
        Weights file; the encoder is loaded once per process (:func:`get_encoder`).
    allow_download : bool
        Whether weights may be downloaded.

    Returns
    -------
    vector : numpy.ndarray
        The CLS token.
    encoder : str
        The encoder (table suffix).

    Raises
    ------
    WarehouseError
        The table's weights are not the ones available here (their SHA-256 differ).
    """
    from features.embeddings import load_image_file
    from warehouse import Snapshot, WarehouseError, search

    table = search.pick_table(wh, encoder)
    name = table.removeprefix("embeddings_")
    if name not in ENCODERS:  # an hf_hub: / timm: table: its rows say the name it loads by
        names = wh.read(table, columns=["encoder"]).column("encoder").unique().to_pylist()
        loadable = [n for n in names if ":" in n]
        name = loadable[0] if len(loadable) == 1 else name

    def hashes() -> list[str]:
        return wh.read(table, columns=["weights_sha256"]).column("weights_sha256").unique().to_pylist()

    # a server's snapshot reads the column once per table version, not once per upload
    stored = wh.session.memo(("weights_sha256", table, wh.pins[table]), hashes) if isinstance(wh, Snapshot) \
        else hashes()
    enc, _ = get_encoder(name, weights_path or "", allow_download, wh)
    name = enc.name
    if enc.weights_sha256 not in stored:
        raise WarehouseError(
            f"{table} was computed with weights sha256 {', '.join(s[:12] for s in stored)}, but the {name} "
            f"weights found here have {enc.weights_sha256[:12]}; pass the same file with --weights"
        )
    pixels = image if isinstance(image, np.ndarray) else load_image_file(image)
    cls, _ = embed_images([pixels], enc, batch_size=1)
    return cls[0], name


@dataclass(frozen=True)
class ShardEmbedding:
    """What :func:`embed_shard` wrote."""

    table: str
    shard: str
    rows: int
    galaxy_ids: list[str]
    seconds: float
    flagged: int
    shard_galaxies: int = 0
    """Galaxies in the shard (``rows`` of them embedded: fewer for a sampled baseline)."""


def _fsl(matrix: np.ndarray) -> pa.FixedSizeListArray:
    m = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(m.reshape(-1)), m.shape[1])


def shard_ids(wh: Warehouse, shard: str, sample: int = 0) -> tuple[list[str], int]:
    """The galaxies of ``shard`` to embed (``sample``: those in the hash sample, see :func:`embed_shard`)
    and how many the shard has."""
    ids = wh.read("galaxies", columns=["galaxy_id"], where=f"shard = {quote(shard)}").column("galaxy_id").to_pylist()
    if not sample:
        return ids, len(ids)
    keep = in_baseline_sample(ids, wh.count("galaxies"), sample)
    return [g for g, k in zip(ids, keep) if k], len(ids)


def embed_shard(
    wh: Warehouse,
    shard: str,
    encoder: Encoder,
    *,
    batch_size: int = 32,
    run_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    sample: int = 0,
) -> ShardEmbedding:
    """Embed every galaxy of ``shard`` (or its part of a sample) and upsert its rows in ``embeddings_<encoder>``
    (one commit).

    Parameters
    ----------
    wh : Warehouse
    shard : str
        A shard key of the ``galaxies`` table.
    encoder : Encoder
        From :func:`features.embeddings.load_encoder`.
    batch_size : int
        Images per forward pass.
    run_id : str, optional
        Recorded with every row.
    progress : callable, optional
        ``progress(done, total)`` over the shard.
    sample : int
        0: every galaxy. Else only the shard's galaxies in a hash sample of about ``sample`` of the
        warehouse's (:func:`features.embeddings.in_baseline_sample`). Rows are upserted: vectors
        stored earlier (a sample drawn when the catalogue was smaller, a run on every galaxy) stay.

    Notes
    -----
    Per-galaxy image problems do not stop the shard: a NaN pixel is zeroed and flagged
    ``IMAGE_NAN``, a constant stamp ``IMAGE_BLANK``; vectors of a random baseline carry
    ``RANDOM_WEIGHTS``.
    """
    t0 = time.perf_counter()
    ids, in_shard = shard_ids(wh, shard, sample)
    n = len(ids)
    cls = np.empty((n, encoder.dim), dtype=np.float32)
    pmean = np.empty((n, encoder.dim), dtype=np.float32)
    flags = np.zeros(n, dtype=np.int64)
    for lo in range(0, n, READ_CHUNK):
        chunk = ids[lo:lo + READ_CHUNK]
        images = wh.read_images(chunk, threads=step_cores())
        flags[lo:lo + len(chunk)] = [image_flags(im) | encoder.flags for im in images]
        done = lo

        def _progress(d: int, _t: int, base: int = done) -> None:
            if progress is not None:
                progress(base + d, n)

        c, p = embed_images(images, encoder, batch_size=batch_size, progress=_progress)
        cls[lo:lo + len(chunk)] = c
        pmean[lo:lo + len(chunk)] = p
    table = embedding_table(encoder.name)
    spec = embedding_spec(encoder.name, encoder.dim)
    rows = pa.table(
        {
            "galaxy_id": pa.array(ids, pa.string()),
            "shard": pa.array([shard] * n, pa.string()),
            "encoder": pa.array([encoder.spec.load_name] * n, pa.string()),  # hf_hub:<repo> for a Hub table
            "weights_sha256": pa.array([encoder.weights_sha256] * n, pa.string()),
            "weights_origin": pa.array([encoder.weights_origin.value] * n, pa.string()),
            "flags": pa.array(flags, pa.int64()),
            "vector": _fsl(cls),
            "patch_mean": _fsl(pmean),
        }
    )
    if n:
        wh.upsert(table, rows, spec=spec, run_id=run_id)
    flagged = int(((flags & ~np.int64(encoder.flags)) != 0).sum())
    return ShardEmbedding(table, shard, n, ids, time.perf_counter() - t0, flagged, in_shard)


def vector_stats(wh: Warehouse, table: str, shard: str) -> dict[str, float | int]:
    """Counts and norm range of a shard's stored vectors, for the asset checks."""
    rows = wh.read(table, columns=["galaxy_id", "vector"], where=f"shard = {quote(shard)}")
    n = rows.num_rows
    if n == 0:
        return {"rows": 0, "unique_ids": 0, "nan_vectors": 0, "norm_min": float("nan"), "norm_max": float("nan")}
    col = rows.column("vector").combine_chunks()
    dim = col.type.list_size
    vec = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, dim)
    finite = np.isfinite(vec).all(axis=1)
    norms = np.linalg.norm(vec[finite], axis=1) if finite.any() else np.array([np.nan])
    return {
        "rows": n,
        "unique_ids": len(set(rows.column("galaxy_id").to_pylist())),
        "nan_vectors": int((~finite).sum()),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
    }
