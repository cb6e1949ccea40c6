"""Galaxy10 DECaLS (Leung & Bovy; Walmsley et al. 2022) read in chunks from ``Galaxy10_DECals.h5``.

The file holds 17,736 galaxies: ``images`` (uint8, N x 256 x 256 x 3 RGB composites of DESI Legacy
Imaging Surveys g, r, z cutouts), ``ans`` (class label 0-9, names in
:data:`features.sources.classes.GALAXY10_CLASSES`), ``ra``, ``dec`` (degrees), ``redshift`` and
``pxscale`` (arcsec per pixel). :class:`Galaxy10Source` validates keys, dtypes and shapes up front and
reads ``chunk_size`` images at a time with h5py, so memory stays bounded whatever the file size.

:func:`download` fetches the file from Zenodo record 10845026 with a progress bar, HTTP range resume
and a checksum check (:mod:`features.sources.download`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import InputError
from features.sources.base import GalaxyBatch, Source
from features.sources.classes import GALAXY10_CLASSES
from features.sources.download import download_file
from features.sources.ranges import check_image_size, check_positions

__all__ = [
    "GALAXY10_BANDS",
    "GALAXY10_FILENAME",
    "GALAXY10_IMAGE_SHAPE",
    "GALAXY10_MD5",
    "GALAXY10_SHA256",
    "GALAXY10_URL",
    "Galaxy10Source",
    "download",
]

GALAXY10_FILENAME = "Galaxy10_DECals.h5"
GALAXY10_URL = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
"""The file in Zenodo record 10845026 (the record page is https://zenodo.org/records/10845026)."""

GALAXY10_SHA256 = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
"""SHA-256 published with the dataset (astroNN's ``astroNN.datasets.galaxy10.load_data`` checks it;
also in the henrysky/Galaxy10 README). 2.54 GB."""

GALAXY10_MD5 = "c6b7b4db82b3a5d63d6a7e3e5249b51c"
"""MD5 that Zenodo lists for the file in record 10845026 (as quoted by projects that download it)."""

# Channel order of the RGB composites. Galaxy10 DECaLS images come from Galaxy Zoo DECaLS, whose colour
# images (like the Legacy Surveys viewer and cutout service) are made by legacypipe's ``get_rgb`` with
# ``grzscales = dict(g=(2, ...), r=(1, ...), z=(0, ...))``, i.e. {band: (RGB plane, scale)}: z -> R,
# r -> G, g -> B (legacysurvey/legacypipe py/legacypipe/survey.py; the same mapping is in
# legacysurvey/imagine map/views.py ``rgb_scales``).
GALAXY10_BANDS = "z,r,g"
GALAXY10_IMAGE_SHAPE = (256, 256, 3)

_COLUMNS = ("ans", "ra", "dec", "redshift", "pxscale")
_HINT = f"or put {GALAXY10_FILENAME} anywhere and run `astrovision ingest --source galaxy10 --path FILE`"


def _h5py():
    import h5py

    return h5py


class Galaxy10Source(Source):
    """Galaxies of a ``Galaxy10_DECals.h5`` file, read ``chunk_size`` images at a time.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    chunk_size : int
        Most images read from disk per h5py call (and per batch). Peak memory is a couple of batches of
        196 kB images plus the batches the caller holds, whatever the file size (see
        docs/benchmarks_sources.md).
    image_shape : tuple of int
        Expected ``(H, W, 3)`` of each image. The real file is 256 x 256 x 3; a smaller value is only for
        hand-made test files.

    Notes
    -----
    Native ids are the row number, zero-padded to five digits (``galaxy10:00123`` under the default name
    ``galaxy10``; a second file needs another name, e.g. ``galaxy10_b:00123``). Images are
    ``rgb_composite`` with bands ``z,r,g`` (R, G, B; see :data:`GALAXY10_BANDS`). A ``pxscale`` that is
    not finite and positive is passed on as NaN (unknown); ``redshift`` is passed on as stored.
    """

    kind = "galaxy10"
    default_shard_size = 1000

    def __init__(self, path: str | Path, chunk_size: int = 256,
                 image_shape: tuple[int, int, int] = GALAXY10_IMAGE_SHAPE) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.path = Path(path)
        self.chunk_size = int(chunk_size)
        self.image_shape = tuple(int(s) for s in image_shape)
        check_image_size(self.image_shape[0], self.image_shape[1], f"{self.path} (image_shape)")
        self._n: int | None = None

    # -- file access ---------------------------------------------------------------------------------
    def _open(self):
        """Open the file read-only, turning every failure into an InputError naming it."""
        if not self.path.exists():
            raise InputError(
                f"{self.path}: file not found; download it with `astrovision download-galaxy10 DEST` "
                f"or from {GALAXY10_URL}"
            )
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, expected the file {GALAXY10_FILENAME}")
        try:
            return _h5py().File(self.path, "r")
        except OSError as e:  # truncated, not HDF5, unreadable
            msg = str(e)
            inner = msg[msg.find("(") + 1:msg.rfind(")")] if "(" in msg and ")" in msg else msg
            if "truncated" in msg:
                reason = f"the file is truncated ({inner}); download it again"
            elif "signature" in msg:
                reason = f"not an HDF5 file ({inner})"
            else:
                reason = inner or type(e).__name__
            raise InputError(f"{self.path}: cannot open as HDF5: {reason}") from e

    def _dataset(self, f, key: str):
        h5py = _h5py()
        if key not in f:
            present = ", ".join(sorted(f.keys())) or "none"
            raise InputError(f"{self.path}: missing key {key!r} (keys present: {present})")
        ds = f[key]
        if not isinstance(ds, h5py.Dataset):
            raise InputError(f"{self.path}: key {key!r} is a group, expected a dataset")
        return ds

    def _read(self, ds, sl: slice, what: str) -> np.ndarray:
        try:
            return ds[sl]
        except (OSError, ValueError, RuntimeError) as e:
            raise InputError(
                f"{self.path}: cannot read {what} rows {sl.start}-{sl.stop - 1}: {e}"
            ) from e

    # -- Source interface ----------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._n is None:
            with self._open() as f:
                self._n = int(self._dataset(f, "images").shape[0])
        return self._n

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path), "chunk_size": self.chunk_size}

    def fingerprint(self) -> str:
        """SHA-256 of the file size, the images' shape and every value of ``ans``, ``ra``, ``dec``,
        ``redshift`` and ``pxscale`` (17,736 x 5 numbers for the real file: milliseconds; no image read)."""
        h = hashlib.sha256(f"{self.path.stat().st_size}|".encode())
        with self._open() as f:
            h.update(f"{tuple(self._dataset(f, 'images').shape)}|".encode())
            for key in _COLUMNS:
                ds = self._dataset(f, key)
                h.update(f"{key}|{ds.dtype.str}|".encode())
                h.update(np.ascontiguousarray(self._read(ds, slice(0, ds.shape[0]), repr(key))).tobytes())
        return h.hexdigest()

    def validate(self) -> None:
        """Check keys, dtypes, shapes, labels and positions without reading any image.

        Raises
        ------
        InputError
            Missing / truncated / non-HDF5 file; a missing key; ``images`` not uint8 ``(N,) +
            image_shape``; a column not 1-D of length N or of the wrong kind (``ans`` integer, the others
            floating point); a label outside 0-9; NaN or infinite ``ra`` / ``dec``, ``ra`` outside
            [0, 360) or ``dec`` outside [-90, 90] (the first bad row is named).
        """
        with self._open() as f:
            images = self._dataset(f, "images")
            if images.dtype != np.uint8:
                raise InputError(f"{self.path}: 'images' has dtype {images.dtype}, expected uint8")
            if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
                raise InputError(
                    f"{self.path}: 'images' has shape {images.shape}, expected (N, "
                    f"{', '.join(map(str, self.image_shape))})"
                )
            n = int(images.shape[0])
            if n == 0:
                raise InputError(f"{self.path}: 'images' holds no galaxies")
            kinds = {"ans": "iu", "ra": "f", "dec": "f", "redshift": "f", "pxscale": "f"}
            cols: dict[str, np.ndarray] = {}
            for key in _COLUMNS:
                ds = self._dataset(f, key)
                if ds.dtype.kind not in kinds[key]:
                    want = "an integer" if key == "ans" else "a floating-point"
                    raise InputError(f"{self.path}: {key!r} has dtype {ds.dtype}, expected {want} type")
                if ds.ndim != 1 or ds.shape[0] != n:
                    raise InputError(f"{self.path}: {key!r} has shape {ds.shape}, expected ({n},) like 'images'")
                if key in ("ans", "ra", "dec"):
                    cols[key] = self._read(ds, slice(0, n), repr(key))  # n numbers: cheap
        bad = np.flatnonzero((cols["ans"] < 0) | (cols["ans"] >= len(GALAXY10_CLASSES)))
        if bad.size:
            r = int(bad[0])
            raise InputError(f"{self.path}: 'ans' row {r} is {cols['ans'][r]}, expected a class 0-9 "
                             f"({bad.size} bad rows)")
        check_positions(cols["ra"], cols["dec"], str(self.path))
        self._n = n

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of every row, read from the ``ra`` and ``dec`` keys (no image is read)."""
        with self._open() as f:
            n = len(self)
            return tuple(np.asarray(self._read(self._dataset(f, k), slice(0, n), repr(k)), dtype=np.float64)
                         for k in ("ra", "dec"))

    def iter_batches(self, start: int = 0, stop: int | None = None, batch_size: int = 64) -> Iterator[GalaxyBatch]:
        """Yield rows ``[start, stop)`` in batches of at most ``batch_size``.

        One h5py read per batch, of at most ``min(batch_size, chunk_size)`` rows and never across a
        multiple of ``chunk_size``; h5py reads straight into a new array that the batch's images view, so
        no copy is made and holding an image keeps at most its batch in memory. A read error (e.g. a
        corrupt compressed chunk) raises :class:`InputError` naming the file and the rows.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        with self._open() as f:
            images = self._dataset(f, "images")
            n = int(images.shape[0])
            stop = n if stop is None else min(int(stop), n)
            start = max(int(start), 0)
            if start >= stop:
                return
            rows = slice(start, stop)
            meta = {k: self._read(self._dataset(f, k), rows, repr(k)) for k in _COLUMNS}
            labels = meta["ans"].astype(np.int64)
            pxscale = meta["pxscale"].astype(np.float64)
            pxscale[~(np.isfinite(pxscale) & (pxscale > 0))] = np.nan
            step = max(self.chunk_size, 1)
            for c0 in range(start, stop, step):
                c1 = min(c0 + step, stop)
                for b0 in range(c0, c1, batch_size):
                    b1 = min(b0 + batch_size, c1)
                    block = self._read(images, slice(b0, b1), "'images'")  # a fresh array per batch
                    i0, i1 = b0 - start, b1 - start
                    lab = labels[i0:i1]
                    yield GalaxyBatch(
                        source=self.name,
                        native_ids=[f"{r:05d}" for r in range(b0, b1)],
                        row_index=np.arange(b0, b1, dtype=np.int64),
                        ra=meta["ra"][i0:i1].astype(np.float64),
                        dec=meta["dec"][i0:i1].astype(np.float64),
                        redshift=meta["redshift"][i0:i1].astype(np.float64),
                        pxscale=pxscale[i0:i1],
                        labels=lab,
                        label_names=[GALAXY10_CLASSES[int(v)] if 0 <= v < len(GALAXY10_CLASSES) else None
                                     for v in lab],
                        images=list(block),
                        image_kind="rgb_composite",
                        bands=GALAXY10_BANDS,
                    )


def download(
    dest: str | Path,
    url: str = GALAXY10_URL,
    sha256: str | None = GALAXY10_SHA256,
    md5: str | None = GALAXY10_MD5,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download ``Galaxy10_DECals.h5`` (2.54 GB) from Zenodo record 10845026.

    Parameters
    ----------
    dest : str or Path
        A directory (the file goes in it as ``Galaxy10_DECals.h5``) or the file path itself.
    url : str
        Where to fetch it (default: the Zenodo file).
    sha256, md5 : str or None
        Expected checksums; the defaults are the published ones. ``None`` skips that check.
    timeout : float
        Seconds for the name look-up, the connection and each read: offline, this fails within about
        this long.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The verified file. An interrupted download leaves ``<file>.part``; calling again resumes it.

    Raises
    ------
    OfflineError
        The server cannot be reached; the message says where to put a hand-downloaded file.
    InputError
        Checksum mismatch (the bad download is deleted) or the server refuses the file.
    """
    dest = Path(dest)
    if dest.is_dir() or (not dest.suffix and not dest.exists()):
        dest = dest / GALAXY10_FILENAME
    return download_file(url, dest, sha256=sha256, md5=md5, timeout=timeout, progress=progress, hint=_HINT)
