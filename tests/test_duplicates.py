"""Duplicate grouping: the real Galaxy10 positions, transitivity, hashes, sphere geometry."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from features.sources.duplicates import group_duplicates, position_pairs

ARCSEC = 1 / 3600


def _groups(groups: list[str | None]) -> list[set[int]]:
    members: dict[str, set[int]] = {}
    for i, g in enumerate(groups):
        if g is not None:
            members.setdefault(g, set()).add(i)
    return sorted(members.values(), key=min)


def test_galaxy10_positions_give_the_known_59_pairs(shared_dir: Path) -> None:
    """Measured: 59 pairs within 2" (all at separation 0, i.e. the same galaxy listed twice), 65 within
    3"; astropy's search_around_sky finds the same 59."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    coord = np.loadtxt(shared_dir / "galaxy10" / "Galaxy10_coord.csv", delimiter=",", skiprows=1)
    assert coord.shape == (17736, 3)
    ra, dec = coord[:, 1], coord[:, 2]
    pairs = position_pairs(ra, dec, 2.0)
    assert len(pairs) == 59

    sky = SkyCoord(ra * u.deg, dec * u.deg)
    i, j, sep, _ = sky.search_around_sky(sky, 2 * u.arcsec)
    keep = i < j
    assert {tuple(p) for p in pairs.tolist()} == set(zip(i[keep].tolist(), j[keep].tolist()))
    assert sep[keep].max() <= 2 * u.arcsec

    ids = [f"galaxy10:{int(k):05d}" for k in coord[:, 0]]
    groups = group_duplicates(ids, ra, dec, [None] * len(ids))
    sizes = Counter(Counter(g for g in groups if g).values())
    assert sizes == {2: 59}
    for a, b in pairs:
        assert groups[a] == groups[b] == "dup-" + ids[a]
    assert sum(g is None for g in groups) == 17736 - 118
    assert len(position_pairs(ra, dec, 3.0)) == 65


def test_grouping_is_transitive_along_a_chain() -> None:
    # A--B 1.5", B--C 1.5", A--C 3" (beyond the radius), D far away
    dec = np.array([0.0, 1.5, 3.0, 10.0]) * ARCSEC + 20.0
    ra = np.full(4, 150.0)
    ids = ["s:a", "s:b", "s:c", "s:d"]
    groups = group_duplicates(ids, ra, dec, [None] * 4, radius_arcsec=2.0)
    assert groups == ["dup-s:a", "dup-s:a", "dup-s:a", None]
    assert len(position_pairs(ra, dec, 2.0)) == 2  # the A--C link only comes from transitivity


def test_identical_images_group_wherever_they_are() -> None:
    ids = ["s:1", "s:2", "s:3", "s:4", "s:5"]
    ra = np.array([10.0, 200.0, 50.0, 80.0, 120.0])
    dec = np.array([-5.0, 40.0, 0.0, 10.0, 20.0])
    hashes = ["h1", "h2", "h1", None, None]  # unknown hashes never match each other
    assert group_duplicates(ids, ra, dec, hashes) == ["dup-s:1", None, "dup-s:1", None, None]


def test_hash_and_position_links_merge() -> None:
    ids = ["s:x", "s:y", "s:z"]
    ra = np.array([30.0, 30.0 + 1.0 * ARCSEC, 300.0])  # x~y by position
    dec = np.zeros(3)
    hashes = ["hx", "hyz", "hyz"]  # y~z by image
    assert group_duplicates(ids, ra, dec, hashes) == ["dup-s:x"] * 3


def test_radius_is_a_great_circle_distance() -> None:
    # across RA = 0/360, and near the pole where a large RA difference is a tiny separation
    ra = np.array([359.9997, 0.0002, 0.0, 180.0, 45.0])
    dec = np.array([0.0, 0.0, 89.9999, 89.9999, 0.0])
    groups = group_duplicates(["a", "b", "c", "d", "e"], ra, dec, [None] * 5)
    assert groups[0] == groups[1] == "dup-a"  # 1.8"
    assert groups[2] == groups[3] == "dup-c"  # 0.72"
    assert groups[4] is None


def test_just_outside_the_radius_is_not_a_duplicate() -> None:
    dec = np.array([0.0, 2.05 * ARCSEC])
    assert group_duplicates(["a", "b"], [5.0, 5.0], dec, [None, None], radius_arcsec=2.0) == [None, None]
    assert group_duplicates(["a", "b"], [5.0, 5.0], dec, [None, None], radius_arcsec=2.1) == ["dup-a"] * 2


def test_nan_positions_take_part_only_by_hash() -> None:
    ra = np.array([np.nan, np.nan, 5.0])
    dec = np.array([np.nan, np.nan, 5.0])
    assert group_duplicates(["a", "b", "c"], ra, dec, [None, None, None]) == [None, None, None]
    assert group_duplicates(["a", "b", "c"], ra, dec, ["h", None, "h"]) == ["dup-a", None, "dup-a"]


def test_group_names_do_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(3)
    n = 200
    ra = rng.uniform(10, 10.01, n)  # dense enough for chains of duplicates
    dec = rng.uniform(0, 0.01, n)
    ids = [f"s:{i:03d}" for i in range(n)]
    hashes = [f"h{i % 150}" for i in range(n)]
    base = dict(zip(ids, group_duplicates(ids, ra, dec, hashes)))
    perm = rng.permutation(n)
    shuffled = group_duplicates([ids[k] for k in perm], ra[perm], dec[perm], [hashes[k] for k in perm])
    assert dict(zip([ids[k] for k in perm], shuffled)) == base
    assert any(g is not None for g in base.values())


def test_mismatched_lengths_and_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="lengths differ"):
        group_duplicates(["a", "b"], [1.0], [1.0, 2.0], [None, None])
    with pytest.raises(ValueError, match="unique"):
        group_duplicates(["a", "a"], [1.0, 2.0], [1.0, 2.0], [None, None])
    assert group_duplicates([], [], [], []) == []


def test_empty_and_singleton_inputs_have_no_groups() -> None:
    assert group_duplicates([], [], [], []) == []
    assert group_duplicates(["a"], [1.0], [2.0], ["h"]) == [None]
