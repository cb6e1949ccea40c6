"""A directory of PNG / JPEG / FITS galaxy images plus a CSV catalogue.

Layout::

    PATH/catalog.csv            id[, ra, dec][, label / other columns]
    PATH/images/<id>.png        (or PATH/<id>.png; .jpg, .jpeg, .fits, .fit, .fts, .fits.gz, .fits.fz)

Each catalogue row is one galaxy, its native id the ``id`` column, which is also the image's file name
without suffix (``J000411.19+020924.0.png``). PNG / JPEG images become uint8 ``(H, W, 3)``
``rgb_composite`` arrays; FITS images become float32 ``flux`` arrays, a 2-D image ``(H, W, 1)`` and a
3-D cube (``NAXIS3`` = channels, numpy ``(C, H, W)``) channels last ``(H, W, C)``, their bands read from
the header (``BANDS`` = "g,r,z", per-plane ``BAND<k>`` / ``FILTER<k>``, or ``BAND`` / ``FILTER``), else
``unknown``.

:meth:`FolderSource.validate` parses the catalogue and reads only image headers; pixels are decoded in
:meth:`FolderSource.iter_batches`, where a corrupt file still raises :class:`InputError` naming it.
Images in the folder without a catalogue row are skipped with a warning (``strict=True`` makes that an
error): a folder often holds thumbnails or rejects beside the sample. Positions, pixel scales and image
sizes are checked against :mod:`features.sources.ranges` (images over 1024 px a side are refused).

Positions are optional: many labelled sets (Galaxy Zoo's Kaggle images, GZ1 SDSS cut-outs) hold ids
and pixels only. A catalogue without ``ra`` and ``dec`` columns, or a row with both cells empty, gives
NaN positions, which the ingest flags ``POSITION_UNKNOWN`` (see :class:`features.flags.Flag`). One of
the two columns without the other, one empty cell of a pair, text, or an out-of-range value is refused.

The source's default name is a slug of the directory name (``gz_decals_rings``); galaxy ids are
``<name>:<id>``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.errors import InputError
from features.sources.base import GalaxyBatch, Source, name_from_path
from features.sources.ranges import MAX_IMAGE_SIDE, check_image_size, check_positions, check_pxscale

__all__ = ["DECALS_PXSCALE", "IMAGE_SUFFIXES", "FolderSource", "image_stem", "read_image_file"]

DECALS_PXSCALE = 0.262
"""DECam / Legacy Surveys native pixel scale, arcsec per pixel (Dey et al. 2019)."""

IMAGE_SUFFIXES: dict[str, str] = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
    ".fits.fz": "fits",
}
"""Recognised file suffixes (lower case) and the reader each uses."""

_RGB_MODES_CONVERTIBLE = {"L", "P", "RGBA", "LA", "CMYK", "YCbCr", "1", "RGBX", "PA"}


def image_stem(name: str) -> tuple[str, str] | None:
    """``(stem, reader)`` of an image file name, or None if its suffix is not an image suffix.

    Longest suffix first, so ``x.fits.gz`` has stem ``x`` and ``J0.1+2.3.png`` has stem ``J0.1+2.3``.
    """
    low = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], IMAGE_SUFFIXES[suffix]
    return None


def _read_fits(path: Path) -> tuple[np.ndarray, Any, tuple[int, ...]]:
    """``(float32 (H, W, C) pixels, header, shape in the file)`` of the first 2-D / 3-D image HDU."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if h.data is not None and h.data.ndim >= 2), None)
            if hdu is None:
                raise InputError(f"{path}: FITS file has no 2-D or 3-D image HDU")
            arr = np.asarray(hdu.data, dtype=np.float32)
            header = hdu.header
    except InputError:
        raise
    except Exception as e:  # astropy raises OSError, ValueError, VerifyError, TypeError on bad files
        raise InputError(f"{path}: unreadable FITS file: {e}") from e
    if arr.ndim not in (2, 3):
        raise InputError(f"{path}: FITS image has {arr.ndim} axes, expected 2 or 3")
    image = arr[:, :, None] if arr.ndim == 2 else np.ascontiguousarray(np.moveaxis(arr, 0, -1))
    return image, header, arr.shape


def _read_picture(path: Path) -> np.ndarray:
    """uint8 ``(H, W, 3)`` pixels of an 8-bit colour or grey picture (PNG, JPEG, anything PIL reads)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != "RGB":
                if im.mode not in _RGB_MODES_CONVERTIBLE:
                    raise InputError(f"{path}: image mode {im.mode!r} is not 8-bit colour or grey")
                im = im.convert("RGB")
            return np.array(im, dtype=np.uint8)
    except InputError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: unreadable image file: {e}") from e


def read_image_file(path: str | Path) -> np.ndarray:
    """The pixels of one image file, exactly as a folder source stores them.

    Parameters
    ----------
    path : str or Path
        A FITS file (by its suffix, :data:`IMAGE_SUFFIXES`) or a picture PIL reads.

    Returns
    -------
    numpy.ndarray
        FITS: float32 ``(H, W, C)`` (a 2-D image ``C = 1``, a cube channels last); pictures: uint8
        ``(H, W, 3)``. ``astrovision similar --image`` embeds these, so a query file gives the vector
        of its stored copy.

    Raises
    ------
    InputError
        The file does not exist or cannot be decoded (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image file {p} does not exist")
    hit = image_stem(p.name)
    if hit is not None and hit[1] == "fits":
        return _read_fits(p)[0]
    return _read_picture(p)


def _parse_number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _positions(ra_text: list[str], dec_text: list[str], ids: list[str], cat_file: Path, ra_name: str,
               dec_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ra, dec)`` in degrees from the catalogue's cells: NaN where both cells are empty (unknown).

    Raises
    ------
    InputError
        A cell that is not a finite number, or a row with one of the two cells empty (row and id named).
    """
    ra = np.full(len(ids), np.nan)
    dec = np.full(len(ids), np.nan)
    for r, (a, d) in enumerate(zip(ra_text, dec_text)):
        if not a and not d:
            continue  # position unknown: NaN, flagged POSITION_UNKNOWN at ingest
        for col, text, out in ((ra_name, a, ra), (dec_name, d, dec)):
            v = _parse_number(text) if text else None
            if v is None or not math.isfinite(v):
                shown = repr(text) if text else "empty"
                other = dec_name if col == ra_name else ra_name
                hint = f" while {other!r} is not; leave both empty when the position is unknown" if not text else ""
                raise InputError(f"{cat_file}: {col!r} is {shown} (not a finite number) in row {r} "
                                 f"(id {ids[r]!r}){hint}")
            out[r] = float(v)
    return ra, dec


@dataclass
class _Catalog:
    """The parsed catalogue: one entry per galaxy, in file order."""

    ids: list[str]
    columns: dict[str, list[Any]]  # typed values; None where empty
    numeric: dict[str, bool]
    files: list[Path]
    readers: list[str]
    orphans: list[Path]


class FolderSource(Source):
    """Galaxies from a directory of images and a CSV catalogue.

    Parameters
    ----------
    path : str or Path
        The directory. Images are looked for in ``path/images/`` if it exists, else in ``path``.
    catalog : str or Path, optional
        The CSV catalogue (default ``path/catalog.csv``, else the only ``*.csv`` in ``path``).
    id_column, ra_column, dec_column : str
        Catalogue columns of the id (= image file stem) and the position in degrees. The position
        columns may be absent (every position unknown) or both empty in a row (that row's unknown).
    label_column : str, optional
        Column that becomes ``label`` / ``label_name``: integers are used as labels, named
        ``"<column>=<value>"`` (or ``label_names[value]``); text values are numbered in sorted order and
        keep their text as name. Empty cells mean no label (-1).
    label_names : sequence of str, optional
        Names of integer labels by index (e.g. the Galaxy10 classes).
    pxscale : float or None
        Arcsec per pixel used when the catalogue has no ``pxscale_column`` value; None means unknown
        (NaN). Anything but None or a finite positive number raises :class:`InputError`. The default is the DECaLS native 0.262; image cut-outs resampled to another size (the Galaxy
        Zoo DECaLS images are scaled per galaxy) need the right value or None.
    pxscale_column, redshift_column : str
        Optional catalogue columns (used when present).
    rgb_bands : str
        Band of each R, G, B channel of PNG / JPEG images; default ``z,r,g``, the Legacy Surveys colour
        convention (see :data:`features.sources.galaxy10.GALAXY10_BANDS`).
    strict : bool
        Raise instead of warn when images have no catalogue row.
    max_side : int
        Largest image side in pixels (default :data:`features.sources.ranges.MAX_IMAGE_SIDE`, 1024);
        larger images raise :class:`InputError` at validation.

    Notes
    -----
    Every catalogue column not used above goes into :attr:`GalaxyBatch.extra` (numbers as numbers, empty
    cells as None). Rows are numbered from 0 in file order (``row 0`` is line 2, after the header).
    """

    kind = "folder"
    default_shard_size = 1000

    def __init__(
        self,
        path: str | Path,
        catalog: str | Path | None = None,
        id_column: str = "id",
        ra_column: str = "ra",
        dec_column: str = "dec",
        label_column: str | None = None,
        label_names: Sequence[str] | None = None,
        pxscale: float | None = DECALS_PXSCALE,
        pxscale_column: str = "pxscale",
        redshift_column: str = "redshift",
        rgb_bands: str = "z,r,g",
        strict: bool = False,
        max_side: int = MAX_IMAGE_SIDE,
    ) -> None:
        self.path = Path(path)
        self.catalog_path = Path(catalog) if catalog is not None else None
        self.id_column, self.ra_column, self.dec_column = id_column, ra_column, dec_column
        self.label_column = label_column
        self.label_names = list(label_names) if label_names is not None else None
        scale = check_pxscale(pxscale, f"folder source {self.path}")
        self.pxscale = scale if scale is not None else math.nan
        self.pxscale_column, self.redshift_column = pxscale_column, redshift_column
        self.rgb_bands = rgb_bands
        self.strict = strict
        self.max_side = int(max_side)
        self._cat: _Catalog | None = None
        self._labels: tuple[np.ndarray, list[str | None]] | None = None

    # -- locations -----------------------------------------------------------------------------------
    @property
    def image_dir(self) -> Path:
        sub = self.path / "images"
        return sub if sub.is_dir() else self.path

    def _catalog_file(self) -> Path:
        if self.catalog_path is not None:
            return self.catalog_path
        default = self.path / "catalog.csv"
        if default.exists():
            return default
        found = sorted(self.path.glob("*.csv")) if self.path.is_dir() else []
        if len(found) == 1:
            return found[0]
        what = "no" if not found else f"{len(found)}"
        raise InputError(f"{self.path}: {what} CSV catalogues found; pass the catalogue with --catalog")

    def describe(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this source (paths made absolute)."""
        return {
            "path": str(self.path.resolve()),
            "catalog": str(self.catalog_path.resolve()) if self.catalog_path is not None else None,
            "id_column": self.id_column,
            "ra_column": self.ra_column,
            "dec_column": self.dec_column,
            "label_column": self.label_column,
            "label_names": self.label_names,
            "pxscale": None if math.isnan(self.pxscale) else self.pxscale,
            "pxscale_column": self.pxscale_column,
            "redshift_column": self.redshift_column,
            "rgb_bands": self.rgb_bands,
            "strict": self.strict,
            "max_side": self.max_side,
        }

    def default_name(self) -> str:
        """A slug of the directory name (``gz_decals_rings``), else ``folder``."""
        return name_from_path(self.path, self.kind)

    def fingerprint(self) -> str:
        """SHA-256 of the catalogue file's bytes and the name and byte size of every image it names.

        Cheap (one read of the catalogue, one ``stat`` per image) and blind to an image rewritten with
        the same size; a changed, added or removed catalogue row or image changes it.
        """
        cat = self._read_catalog()
        h = hashlib.sha256()
        h.update(self._catalog_file().read_bytes())
        for path in cat.files:
            h.update(f"\0{path.name}\0{path.stat().st_size}".encode())
        return h.hexdigest()

    # -- catalogue -----------------------------------------------------------------------------------
    def _read_catalog(self) -> _Catalog:
        if self._cat is not None:
            return self._cat
        if not self.path.is_dir():
            raise InputError(f"{self.path}: not a directory of images")
        cat_file = self._catalog_file()
        if not cat_file.is_file():
            raise InputError(f"{cat_file}: catalogue not found")
        try:
            with open(cat_file, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"{cat_file}: cannot read the catalogue: {e}") from e
        rows = [r for r in rows if any(cell.strip() for cell in r)]  # skip blank lines
        if not rows:
            raise InputError(f"{cat_file}: the catalogue is empty (expected a header line)")
        header = [h.strip() for h in rows[0]]
        seen: dict[str, int] = {}
        for k, h in enumerate(header):
            if h in seen:
                raise InputError(f"{cat_file}: column {h!r} appears twice in the header (columns {seen[h]} and {k})")
            seen[h] = k
        has_ra, has_dec = self.ra_column in seen, self.dec_column in seen
        if has_ra != has_dec:
            present, absent = (self.ra_column, self.dec_column) if has_ra else (self.dec_column, self.ra_column)
            raise InputError(f"{cat_file}: column {present!r} is there but {absent!r} is not; give both "
                             "(degrees) or neither (positions unknown)")
        needed = [self.id_column]
        if self.label_column:
            needed.append(self.label_column)
        missing = [c for c in needed if c not in seen]
        if missing:
            raise InputError(
                f"{cat_file}: missing column(s) {', '.join(map(repr, missing))} "
                f"(columns present: {', '.join(header)})"
            )
        body = rows[1:]
        if not body:
            raise InputError(f"{cat_file}: the catalogue has a header but no rows")
        for r, row in enumerate(body):
            if len(row) != len(header):
                raise InputError(
                    f"{cat_file}: row {r} has {len(row)} fields, the header has {len(header)}"
                )
        raw = {h: [row[k].strip() for row in body] for h, k in seen.items()}
        ids = raw[self.id_column]
        for r, gid in enumerate(ids):
            if not gid:
                raise InputError(f"{cat_file}: row {r} has an empty {self.id_column!r}")
        first: dict[str, int] = {}
        for r, gid in enumerate(ids):
            if gid in first:
                raise InputError(f"{cat_file}: duplicate id {gid!r} in rows {first[gid]} and {r}")
            first[gid] = r

        columns: dict[str, list[Any]] = {}
        numeric: dict[str, bool] = {}
        for h, values in raw.items():
            parsed = [_parse_number(v) if v else None for v in values]
            is_num = all(p is not None for p, v in zip(parsed, values) if v)
            numeric[h] = is_num
            columns[h] = parsed if is_num else [v if v else None for v in values]
        ra_text = raw.get(self.ra_column, [""] * len(ids))
        dec_text = raw.get(self.dec_column, [""] * len(ids))
        ra, dec = _positions(ra_text, dec_text, ids, cat_file, self.ra_column, self.dec_column)
        check_positions(ra, dec, str(cat_file), ids, ra_name=self.ra_column, dec_name=self.dec_column,
                        unknown_ok=True)
        columns[self.ra_column], columns[self.dec_column] = ra.tolist(), dec.tolist()
        numeric[self.ra_column] = numeric[self.dec_column] = True
        if self.pxscale_column in columns and numeric[self.pxscale_column]:
            for r, v in enumerate(columns[self.pxscale_column]):
                if v is not None and not (math.isfinite(v) and v > 0):
                    raise InputError(f"{cat_file}: {self.pxscale_column!r} is {v} in row {r} (id {ids[r]!r}); "
                                     "expected a positive number of arcsec per pixel, or an empty cell")

        files, readers, orphans = self._match_images(ids, cat_file)
        self._cat = _Catalog(ids, columns, numeric, files, readers, orphans)
        return self._cat

    def _match_images(self, ids: list[str], cat_file: Path) -> tuple[list[Path], list[str], list[Path]]:
        img_dir = self.image_dir
        by_stem: dict[str, tuple[Path, str]] = {}
        for p in sorted(img_dir.iterdir()):
            hit = image_stem(p.name)
            if hit is None or not p.is_file():
                continue
            stem, reader = hit
            if stem in by_stem:
                raise InputError(f"{img_dir}: two images for id {stem!r}: {by_stem[stem][0].name} and {p.name}")
            by_stem[stem] = (p, reader)
        missing = [r for r, gid in enumerate(ids) if gid not in by_stem]
        if missing:
            r = missing[0]
            raise InputError(
                f"{cat_file}: row {r} (id {ids[r]!r}) names an image that does not exist: expected "
                f"{img_dir / ids[r]}.png (or .jpg/.jpeg/.fits); {len(missing)} of {len(ids)} rows have no image"
            )
        known = set(ids)
        orphans = [p for stem, (p, _) in by_stem.items() if stem not in known]
        return [by_stem[g][0] for g in ids], [by_stem[g][1] for g in ids], sorted(orphans)

    def _label_arrays(self) -> tuple[np.ndarray, list[str | None]]:
        if self._labels is not None:
            return self._labels
        cat = self._read_catalog()
        n = len(cat.ids)
        if not self.label_column:
            self._labels = np.full(n, -1, dtype=np.int64), [None] * n
            return self._labels
        col = self.label_column
        values = cat.columns[col]
        labels = np.full(n, -1, dtype=np.int64)
        names: list[str | None] = [None] * n
        if cat.numeric[col]:
            for r, v in enumerate(values):
                if v is None:
                    continue
                if float(v) != int(v) or int(v) < 0:
                    raise InputError(f"{self._catalog_file()}: label column {col!r} is {v} in row {r}; "
                                     "expected a non-negative integer or a class name")
                labels[r] = int(v)
                if self.label_names is not None:
                    if int(v) >= len(self.label_names):
                        raise InputError(f"{self._catalog_file()}: label {int(v)} in row {r} has no name "
                                         f"({len(self.label_names)} label names given)")
                    names[r] = self.label_names[int(v)]
                else:
                    names[r] = f"{col}={int(v)}"
        else:
            classes = sorted({v for v in values if v is not None})
            index = {c: k for k, c in enumerate(classes)}
            for r, v in enumerate(values):
                if v is not None:
                    labels[r], names[r] = index[v], v
        self._labels = labels, names
        return self._labels

    # -- images --------------------------------------------------------------------------------------
    def _header(self, path: Path, reader: str) -> tuple[str, str]:
        """``(image_kind, bands)`` from the file header, without decoding pixels."""
        if reader == "fits":
            hdu_header, shape = self._fits_header(path)
            check_image_size(shape[-2], shape[-1], str(path), self.max_side)
            return "flux", self._fits_bands(hdu_header, shape)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                mode = im.mode
                width, height = im.size
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
            raise InputError(f"{path}: unreadable image file: {e}") from e
        if mode != "RGB" and mode not in _RGB_MODES_CONVERTIBLE:
            raise InputError(f"{path}: image mode {mode!r} is not 8-bit colour or grey; store such data as FITS")
        check_image_size(height, width, str(path), self.max_side)
        return "rgb_composite", self.rgb_bands

    @staticmethod
    def _fits_header(path: Path):
        from astropy.io import fits

        try:
            with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
                for hdu in hdul:
                    naxis = int(hdu.header.get("ZNAXIS", hdu.header.get("NAXIS", 0)))
                    if naxis >= 2:
                        prefix = "ZNAXIS" if "ZNAXIS" in hdu.header else "NAXIS"
                        shape = tuple(int(hdu.header[f"{prefix}{k}"]) for k in range(naxis, 0, -1))
                        if naxis > 3:
                            raise InputError(f"{path}: FITS image has {naxis} axes, expected 2 or 3")
                        return hdu.header.copy(), shape
        except InputError:
            raise
        except Exception as e:  # astropy raises OSError, ValueError, VerifyError, TypeError on bad files
            raise InputError(f"{path}: unreadable FITS file: {e}") from e
        raise InputError(f"{path}: FITS file has no 2-D or 3-D image HDU")

    @staticmethod
    def _fits_bands(header, shape: tuple[int, ...]) -> str:
        n = shape[0] if len(shape) == 3 else 1
        bands = header.get("BANDS")
        if isinstance(bands, str) and len(bands.split(",")) == n:
            return ",".join(b.strip() for b in bands.split(","))
        if n == 1:
            one = header.get("BAND", header.get("FILTER"))
            return str(one).strip() if one not in (None, "") else "unknown"
        per = [header.get(f"BAND{k}", header.get(f"FILTER{k}")) for k in range(1, n + 1)]
        if all(p not in (None, "") for p in per):
            return ",".join(str(p).strip() for p in per)
        return ",".join(["unknown"] * n)

    def _decode(self, path: Path, reader: str) -> tuple[np.ndarray, tuple[str, str]]:
        """The pixels as ``(H, W, C)`` and the ``(image_kind, bands)`` of the file.

        The size limit is checked from the header first, so an oversize file is refused undecoded.
        """
        kind_bands = self._header(path, reader)
        if reader == "fits":
            return _read_fits(path)[0], kind_bands
        return _read_picture(path), kind_bands

    # -- Source interface ----------------------------------------------------------------------------
    @property
    def orphans(self) -> list[Path]:
        """Image files in the folder that no catalogue row names (skipped)."""
        return list(self._read_catalog().orphans)

    def __len__(self) -> int:
        return len(self._read_catalog().ids)

    def validate(self) -> None:
        """Check the catalogue, the image files' presence and their headers (no pixel decoding).

        Raises
        ------
        InputError
            No or unreadable catalogue; a required column missing; a row with the wrong number of
            fields; an empty or duplicate id (both rows named); ra / dec not a finite number, ra outside
            [0, 360) or dec outside [-90, 90] (row and id named); a pixel scale that is not positive; a
            catalogue id without an image file (id and expected file named); two image files for one id;
            an unreadable image header or an image over ``max_side`` pixels a side (file named); with
            ``strict``, images without a catalogue row. Only one of the two position columns, or one
            empty cell of a row's pair, is refused too; unknown positions (both absent or empty) are
            a warning.
        """
        cat = self._read_catalog()
        self._label_arrays()
        if cat.orphans:
            shown = ", ".join(p.name for p in cat.orphans[:5]) + (" ..." if len(cat.orphans) > 5 else "")
            msg = (f"{self.image_dir}: {len(cat.orphans)} image(s) have no row in {self._catalog_file()} "
                   f"and are skipped: {shown}")
            if self.strict:
                raise InputError(msg)
            warnings.warn(msg, stacklevel=2)
        unknown = int(np.isnan(np.asarray(cat.columns[self.ra_column], dtype=np.float64)).sum())
        if unknown:
            what = (f"has no {self.ra_column!r} / {self.dec_column!r} columns"
                    if unknown == len(cat.ids) else f"leaves {unknown} of {len(cat.ids)} positions empty")
            warnings.warn(f"{self._catalog_file()} {what}: those galaxies are stored without a position "
                          "(POSITION_UNKNOWN: no sky shard, no position duplicates, no photometry cross-match)",
                          stacklevel=2)
        for path, reader in zip(cat.files, cat.readers):
            self._header(path, reader)

    def _float_column(self, name: str, rows: range, default: float) -> np.ndarray:
        cat = self._read_catalog()
        if name not in cat.columns or not cat.numeric[name]:
            return np.full(len(rows), default, dtype=np.float64)
        values = cat.columns[name]
        out = np.array([values[r] if values[r] is not None else np.nan for r in rows], dtype=np.float64)
        return np.where(np.isfinite(out), out, default)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` of every row, from the catalogue (no image is decoded); NaN where unknown."""
        cat = self._read_catalog()
        return (np.asarray(cat.columns[self.ra_column], dtype=np.float64),
                np.asarray(cat.columns[self.dec_column], dtype=np.float64))

    def iter_batches(self, start: int = 0, stop: int | None = None, batch_size: int = 64) -> Iterator[GalaxyBatch]:
        """Decode rows ``[start, stop)`` in batches of at most ``batch_size``.

        A batch never mixes image kinds or band lists: it is cut where they change (a folder of PNGs
        next to FITS cubes yields separate batches).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        cat = self._read_catalog()
        labels, names = self._label_arrays()
        n = len(cat.ids)
        stop = n if stop is None else min(int(stop), n)
        start = max(int(start), 0)
        if start >= stop:
            return
        used = {self.id_column, self.ra_column, self.dec_column, self.label_column, self.pxscale_column,
                self.redshift_column}
        extra_cols = [c for c in cat.columns if c not in used]

        def extra(r: int) -> dict[str, Any]:
            out = {}
            for c in extra_cols:
                v = cat.columns[c][r]
                out[c] = None if isinstance(v, float) and not math.isfinite(v) else v
            return out

        pending: list[tuple[int, np.ndarray]] = []
        pending_key: tuple[str, str] | None = None

        def flush() -> GalaxyBatch:
            rows = range(pending[0][0], pending[-1][0] + 1)
            return GalaxyBatch(
                source=self.name,
                native_ids=[cat.ids[r] for r in rows],
                row_index=np.arange(rows.start, rows.stop, dtype=np.int64),
                ra=np.array([cat.columns[self.ra_column][r] for r in rows], dtype=np.float64),
                dec=np.array([cat.columns[self.dec_column][r] for r in rows], dtype=np.float64),
                redshift=self._float_column(self.redshift_column, rows, np.nan),
                pxscale=self._float_column(self.pxscale_column, rows, self.pxscale),
                labels=labels[rows.start:rows.stop].copy(),
                label_names=names[rows.start:rows.stop],
                images=[im for _, im in pending],
                image_kind=pending_key[0],
                bands=pending_key[1],
                extra=[extra(r) for r in rows],
            )

        for r in range(start, stop):
            path, reader = cat.files[r], cat.readers[r]
            image, key = self._decode(path, reader)
            if pending and (key != pending_key or len(pending) >= batch_size):
                yield flush()
                pending = []
            pending_key = key
            pending.append((r, image))
        if pending:
            yield flush()
