"""The ``cone(ra, dec, ra0, dec0, radius_arcsec)`` SQL macro: RA wrap, poles, the radius edge, every view."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from toy_warehouse import fill_toy_warehouse

from warehouse import Warehouse


def _sep(wh: Warehouse, ra: float, dec: float, ra0: float, dec0: float) -> float:
    return float(wh.sql(f"SELECT ang_sep_arcsec({ra}, {dec}, {ra0}, {dec0}) AS s")["s"][0])


def _inside(wh: Warehouse, ra: float, dec: float, ra0: float, dec0: float, radius: float) -> bool:
    return bool(wh.sql(f"SELECT cone({ra}, {dec}, {ra0}, {dec0}, {radius}) AS c")["c"][0])


def test_separation_across_ra_zero_and_at_the_poles(warehouse):
    assert _sep(warehouse, 359.9999, 0.0, 0.0001, 0.0) == pytest.approx(0.72, rel=1e-9)
    assert _sep(warehouse, 0.0, 10.0, 360.0, 10.0) == pytest.approx(0.0, abs=1e-9)
    # 180 degrees of RA apart, both 0.0001 deg from the pole: 0.72 arcsec through it
    assert _sep(warehouse, 0.0, 89.9999, 180.0, 89.9999) == pytest.approx(0.72, rel=1e-6)
    assert _sep(warehouse, 123.0, -89.9999, 0.0, -90.0) == pytest.approx(0.36, rel=1e-6)
    # a degree of RA is cos(dec) degrees of sky
    assert _sep(warehouse, 10.0, 60.0, 11.0, 60.0) == pytest.approx(3600 * math.degrees(
        2 * math.asin(math.cos(math.radians(60)) * math.sin(math.radians(0.5)))), rel=1e-9)


def test_cone_wraps_ra_and_holds_near_the_pole(warehouse):
    assert _inside(warehouse, 359.9999, 0.0, 0.0001, 0.0, 1.0)
    assert not _inside(warehouse, 359.9999, 0.0, 0.0001, 0.0, 0.7)
    assert _inside(warehouse, 0.0, 89.9999, 180.0, 89.9999, 0.73)
    assert not _inside(warehouse, 0.0, 89.9999, 180.0, 89.9999, 0.71)
    assert _inside(warehouse, 271.0, 89.99995, 17.0, 90.0, 0.2)  # any RA at the pole itself


def test_cone_radius_edge(warehouse):
    d = 10.0  # arcsec, along a meridian: the separation is exactly the declination difference
    dec = 20.0 + d / 3600.0
    assert _inside(warehouse, 45.0, dec, 45.0, 20.0, d * (1 + 1e-9))
    assert not _inside(warehouse, 45.0, dec, 45.0, 20.0, d * (1 - 1e-9))
    assert wh_null(warehouse) is False


def wh_null(wh: Warehouse):
    """A NULL position (POSITION_UNKNOWN) is in no cone: the macro returns false, not NULL."""
    return wh.sql("SELECT cone(NULL, 0.0, 0.0, 0.0, 1.0) AS c")["c"][0]


@pytest.fixture
def sky(warehouse):
    """Six toy galaxies: three around RA 0 / Dec 0 (two across the wrap), one near the north pole, two far."""
    gal, _ = fill_toy_warehouse(warehouse, n=6)
    gal["ra"] = [359.9990, 0.0010, 0.0, 45.0, 200.0, 100.0]
    gal["dec"] = [0.0, 0.0, 0.0030, 89.9995, 89.9995, -30.0]
    warehouse.upsert("galaxies", pa.table(gal))
    return warehouse


def test_cone_on_galaxies_and_the_views(sky):
    ids = sorted(sky.sql("SELECT galaxy_id FROM galaxies WHERE cone(ra, dec, 0, 0, 11)")["galaxy_id"].to_list())
    assert ids == ["toy:000000", "toy:000001", "toy:000002"]
    for view in ("galaxy_images", "galaxy_features"):
        n = sky.sql(f"SELECT count(*) AS n FROM {view} WHERE cone(ra, dec, 0, 0, 11)")["n"][0]
        assert n == 3, view
    # the pole pair: 155 deg of RA apart, 1.8 arcsec from the pole each, ~3.5 arcsec apart
    pole = sky.sql("SELECT galaxy_id FROM galaxies WHERE cone(ra, dec, 45.0, 89.9995, 4) ORDER BY galaxy_id")
    assert pole["galaxy_id"].to_list() == ["toy:000003", "toy:000004"]
    joined = sky.sql("SELECT count(*) AS n FROM morphology m RIGHT JOIN galaxies g USING (galaxy_id) "
                     "WHERE cone(g.ra, g.dec, 100, -30, 1)")
    assert joined["n"][0] == 1


def test_cone_in_similar_where(sky):
    near = sky.similar("toy:000000", k=6, where="cone(ra, dec, 0, 0, 11)")
    assert sorted(near["galaxy_id"].to_list()) == ["toy:000000", "toy:000001", "toy:000002"]
