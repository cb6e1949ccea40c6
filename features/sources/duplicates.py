"""Duplicate groups: identical images or positions closer than a few arcsec, joined transitively.

Galaxy10 DECaLS holds about 59 pairs of entries within 2 arcsec of each other (the same galaxy
selected twice); a random train/test split would leak one copy of each into the test set. Every such
set of galaxies gets one ``duplicate_group`` so that splits can keep it on one side.

Positions are matched with a k-d tree on unit vectors (the chord between two points at angular
separation theta is ``2 sin(theta / 2)``), which is exact on the sphere, needs no wrap-around at
RA = 0/360 and takes milliseconds for 17,736 galaxies. Pairs found by position and by image hash are
the edges of a graph whose connected components (:func:`scipy.sparse.csgraph.connected_components`)
are the groups, so A~B and B~C put A, B and C in one group even when A and C are far apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["GROUP_PREFIX", "group_duplicates", "position_pairs"]

GROUP_PREFIX = "dup-"


def _unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    cos_dec = np.cos(dec)
    return np.column_stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)])


def position_pairs(ra: np.ndarray, dec: np.ndarray, radius_arcsec: float = 2.0) -> np.ndarray:
    """Index pairs ``(i, j)``, ``i < j``, of positions within ``radius_arcsec`` of each other.

    Parameters
    ----------
    ra, dec : array_like of float
        Degrees. Rows where either is NaN (or infinite) take part in no pair.
    radius_arcsec : float
        Match radius (inclusive).

    Returns
    -------
    numpy.ndarray of int64, shape (n_pairs, 2)
        Sorted by ``i`` then ``j``.
    """
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"ra and dec must be 1-D of one length, got {ra.shape} and {dec.shape}")
    ok = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
    if ok.size < 2 or radius_arcsec <= 0:
        return np.empty((0, 2), dtype=np.int64)
    chord = 2.0 * np.sin(np.radians(radius_arcsec / 3600.0) / 2.0)
    pairs = cKDTree(_unit_vectors(ra[ok], dec[ok])).query_pairs(chord, output_type="ndarray")
    pairs = np.sort(ok[pairs], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs.reshape(0, 2)


def group_duplicates(
    galaxy_ids: Sequence[str],
    ra: Sequence[float] | np.ndarray,
    dec: Sequence[float] | np.ndarray,
    image_sha1: Sequence[str | None],
    radius_arcsec: float = 2.0,
) -> list[str | None]:
    """The duplicate group of every galaxy, or None for galaxies without a duplicate.

    Two galaxies are duplicates when their images have the same hash or their positions lie within
    ``radius_arcsec``; groups are the connected components of that relation (transitive closure).

    Parameters
    ----------
    galaxy_ids : sequence of str
        Unique ids, one per galaxy.
    ra, dec : array_like of float
        Degrees; NaN where unknown (such galaxies are grouped by image hash only).
    image_sha1 : sequence of str or None
        Image hashes (:func:`features.sources.base.image_sha1`); None where unknown.
    radius_arcsec : float
        Position match radius; 0 groups by image hash only.

    Returns
    -------
    list of str or None
        ``"dup-" + the smallest galaxy_id of the group`` for members of a group of two or more, None
        for singletons. The name depends only on the group's members, not on the input order, so it is
        stable between runs and shards.
    """
    ids = list(galaxy_ids)
    n = len(ids)
    ra = np.asarray(ra, dtype=np.float64)
    dec = np.asarray(dec, dtype=np.float64)
    hashes = list(image_sha1)
    if not (len(ra) == len(dec) == len(hashes) == n):
        raise ValueError(f"lengths differ: {n} ids, {len(ra)} ra, {len(dec)} dec, {len(hashes)} hashes")
    if len(set(ids)) != n:
        raise ValueError("galaxy_ids must be unique")
    edges = [position_pairs(ra, dec, radius_arcsec)]
    first_with_hash: dict[str, int] = {}
    same_hash = []
    for i, h in enumerate(hashes):
        if h is not None:
            same_hash.append((first_with_hash.setdefault(h, i), i))  # (i, i) for the first: harmless
    if same_hash:
        edges.append(np.asarray(same_hash, dtype=np.int64))
    pairs = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, roots = connected_components(graph, directed=False)
    counts = np.bincount(roots, minlength=n) if n else np.zeros(0, dtype=np.int64)
    name: dict[int, str] = {}
    for i in range(n):
        r = int(roots[i])
        if counts[r] > 1 and (r not in name or ids[i] < name[r]):
            name[r] = ids[i]
    return [GROUP_PREFIX + name[int(r)] if counts[r] > 1 else None for r in roots]
