"""Sky partitions: HEALPix shards cover every galaxy exactly once, and one region can be materialized again."""

from __future__ import annotations

import numpy as np
import pytest

from features.errors import InputError
from features.sources.sky import (
    check_nside,
    cone_pixels,
    healpix_pixels,
    parse_sky_shard,
    row_runs,
    sky_shard_key,
)
from features.sources.synthetic import SyntheticSurvey


def test_healpix_pixels_of_the_base_pixel_centres_and_across_ra_zero():
    # nside 1: the 12 base pixels; 0-3 centred at dec +41.8, 4-7 on the equator at ra 0, 90, ..., 8-11 at -41.8
    ra = np.array([45.0, 135.0, 0.0, 90.0, 45.0, 315.0])
    dec = np.array([41.8, 41.8, 0.0, 0.0, -41.8, -41.8])
    assert healpix_pixels(ra, dec, 1).tolist() == [0, 1, 4, 5, 8, 11]
    # NESTED: the four children of pixel p at 2 * nside are 4p .. 4p + 3
    fine = healpix_pixels(ra, dec, 2)
    assert (fine // 4).tolist() == [0, 1, 4, 5, 8, 11]
    assert healpix_pixels([360.0, 720.5], [10.0, -5.0], 64).tolist() == healpix_pixels([0.0, 0.5], [10.0, -5.0],
                                                                                       64).tolist()
    # the four pixels around the north pole at nside 8 hold every RA there
    assert sorted(set(healpix_pixels(np.arange(0, 360, 5.0), np.full(72, 89.9), 8).tolist())) == [63, 127, 191, 255]


def test_cone_pixels_hold_every_galaxy_of_the_cone():
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(150, 152, 2000), rng.uniform(1, 3, 2000)
    centre = (151.0, 2.0, 1800.0)  # 0.5 deg
    sep = np.degrees(np.arccos(np.clip(np.sin(np.radians(dec)) * np.sin(np.radians(2.0)) + np.cos(np.radians(dec))
                                       * np.cos(np.radians(2.0)) * np.cos(np.radians(ra - 151.0)), -1, 1))) * 3600
    inside = sep <= centre[2]
    pixels = set(cone_pixels(*centre, nside=64).tolist())
    assert inside.sum() > 100 and set(healpix_pixels(ra[inside], dec[inside], 64).tolist()) <= pixels
    with pytest.raises(InputError, match="radius"):
        cone_pixels(10, 10, 0, 8)


@pytest.mark.parametrize("bad", [0, 3, -4, 2**30, 2.0, True])
def test_nside_must_be_a_power_of_two(bad):
    with pytest.raises(InputError, match="power of two"):
        check_nside(bad)


def test_shard_keys_and_runs():
    assert sky_shard_key("demo", 8, 301) == "demo-hpx8-301"
    assert parse_sky_shard("demo-hpx8-301") == ("demo", 8, 301)
    assert parse_sky_shard("demo-00003") is None and parse_sky_shard("demo-hpx8") is None
    assert row_runs([7, 0, 1, 2, 9, 8]) == [(0, 3), (7, 10)]
    assert row_runs([]) == []


def test_unknown_positions_are_in_no_pixel_and_one_documented_shard():
    """A galaxy without a position (POSITION_UNKNOWN) gets UNKNOWN_PIXEL and the shard ``<name>-hpx<N>-unknown``,
    which no cone overlaps."""
    from features.sources.sky import UNKNOWN_PIXEL, pixel_rows

    ra, dec = np.array([45.0, np.nan, 135.0]), np.array([41.8, np.nan, 41.8])
    assert healpix_pixels(ra, dec, 1).tolist() == [0, UNKNOWN_PIXEL, 1]
    assert sky_shard_key("gz1", 8, UNKNOWN_PIXEL) == "gz1-hpx8-unknown"
    assert parse_sky_shard("gz1-hpx8-unknown") == ("gz1", 8, UNKNOWN_PIXEL)
    assert pixel_rows(ra, dec, 1, UNKNOWN_PIXEL).tolist() == [1]
    assert UNKNOWN_PIXEL not in cone_pixels(0.0, 0.0, 180 * 3600.0, 1).tolist()


def test_sky_partitioned_folder_with_some_unknown_positions(warehouse, tmp_path):
    """Every galaxy lands in exactly one shard: the known ones by pixel, the unknown ones in ``-unknown``."""
    import csv

    from PIL import Image

    from features.sources.folder import FolderSource
    from stages.sources import register_source, shard_rows

    (tmp_path / "f").mkdir()
    rows = [["a", "10.0", "5.0"], ["b", "", ""], ["c", "200.0", "-30.0"], ["d", "", ""]]
    for gid, *_ in rows:
        Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(tmp_path / "f" / f"{gid}.png")
    with open(tmp_path / "f" / "catalog.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "ra", "dec"], *rows])
    with pytest.warns(UserWarning, match="leaves 2 of 4 positions empty"):
        keys = register_source(warehouse, FolderSource(tmp_path / "f"), healpix_nside=4)
    assert "f-hpx4-unknown" in keys and len(keys) == 3
    assert shard_rows(warehouse, "f-hpx4-unknown")[1].tolist() == [1, 3]
    assert sorted(np.concatenate([shard_rows(warehouse, k)[1] for k in keys]).tolist()) == [0, 1, 2, 3]


def test_partitioning_cannot_change_without_replace(warehouse):
    from stages.sources import register_source

    survey = SyntheticSurvey(n=12, seed=0)
    register_source(warehouse, survey, healpix_nside=2, params={"n": 12, "seed": 0})
    with pytest.raises(InputError, match="already ingested with HEALPix nside 2"):
        register_source(warehouse, survey, params={"n": 12, "seed": 0})
    assert register_source(warehouse, survey, healpix_nside=2, params={"n": 12, "seed": 0})  # idempotent


def _run_ids(home) -> dict[str, set[str]]:
    from warehouse import Warehouse

    out: dict[str, set[str]] = {}
    for r in Warehouse(home).read("galaxies", columns=["shard", "run_id"]).to_pylist():
        out.setdefault(r["shard"], set()).add(r["run_id"])
    return out


def test_healpix_shards_cover_every_galaxy_once_and_one_region_runs_again(tmp_path, monkeypatch, capsys):
    """``ingest --healpix-nside`` then ``materialize --cone`` through the CLI's own entry point."""
    from astropy_healpix import healpix_to_lonlat

    from service.cli import main
    from stages.sources import shard_rows
    from warehouse import Warehouse

    home = tmp_path / "home"
    monkeypatch.setenv("ASTROVISION_HOME", str(home))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert main(["ingest", "--source", "demo", "--n", "24", "--healpix-nside", "2"]) == 0, capsys.readouterr()
    wh = Warehouse(home)
    shards = sorted(_run_ids(home))
    assert len(shards) >= 2 and all(parse_sky_shard(s)[:2] == ("demo", 2) for s in shards)
    rows = np.concatenate([shard_rows(wh, s)[1] for s in shards])
    assert sorted(rows.tolist()) == list(range(24))  # a partition: each row in exactly one shard
    gal = wh.read("galaxies", columns=["galaxy_id", "shard", "ra", "dec"]).to_pydict()
    assert len(gal["galaxy_id"]) == len(set(gal["galaxy_id"])) == 24
    assert [f"demo-hpx2-{p}" for p in healpix_pixels(gal["ra"], gal["dec"], 2)] == gal["shard"]
    assert wh.count("images") == wh.count("truth") == 24

    before = _run_ids(home)
    target = shards[0]
    lon, lat = healpix_to_lonlat(parse_sky_shard(target)[2], 2, order="nested")
    assert main(["materialize", "--group", "ingest", "--cone", str(lon.deg), str(lat.deg), "60"]) == 0
    after = _run_ids(home)
    assert sorted(s for s in after if after[s] != before[s]) == [target]  # only the region's shard ran again
    assert wh.count("galaxies") == 24

    capsys.readouterr()
    assert main(["ingest", "--source", "demo", "--n", "24", "--healpix-nside", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "astrovision: error: --healpix-nside must be a power of two from 1 to 2**29 (e.g. 32: ~1.8 deg pixels); got 3"]
    assert main(["materialize", "--cone", "10", "-60", "5"]) == 2
    assert "no ingested sky shard overlaps" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    assert main(["--home", str(fresh), "demo", "--n", "5", "--healpix-nside", "6"]) == 2
    assert "--healpix-nside must be a power of two" in capsys.readouterr().err
    assert not fresh.exists()  # refused before anything was written


def test_each_reader_gives_the_positions_its_batches_carry(galaxy10_h5, shared_dir, tmp_path):
    from conftest import copy_rings

    from features.sources.folder import FolderSource
    from features.sources.galaxy10 import Galaxy10Source

    folder = copy_rings(shared_dir, tmp_path / "rings", 0, 6)
    for source in (Galaxy10Source(galaxy10_h5), FolderSource(folder / "images", folder / "catalog.csv"),
                   SyntheticSurvey(n=5, seed=1)):
        ra, dec = source.positions()
        batches = list(source.iter_batches(0, len(source)))
        assert np.array_equal(ra, np.concatenate([b.ra for b in batches])), source.kind
        assert np.array_equal(dec, np.concatenate([b.dec for b in batches])), source.kind
        runs = list(source.iter_runs([(0, 2), (3, 5)]))
        assert np.concatenate([b.row_index for b in runs]).tolist() == [0, 1, 3, 4], source.kind
