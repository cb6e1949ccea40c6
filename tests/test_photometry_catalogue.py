"""Catalogue files (CSV, Parquet, FITS): validation, mapping, cross-match, quality cuts, colours."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from features.errors import InputError
from features.flags import Flag
from features.photometry import (
    CANONICAL,
    photometry_from_catalogue,
    read_catalogue,
    select_nearest,
)
from features.photometry.quality import absolute_magnitude

RA = np.array([150.0, 150.01, 150.02, 150.03])
DEC = np.array([2.0, 2.0, 2.0, 2.0])
IDS = ["demo:000000", "demo:000001", "demo:000002", "demo:000003"]
ARCSEC = 1 / 3600


def _catalogue_rows() -> dict[str, list]:
    """Five objects: galaxy 0 matched at 0.5", galaxy 1 has two within 1.5", galaxy 2 a far one, galaxy 3 none."""
    n = 5
    cols: dict[str, list] = {c: [np.nan] * n for c in CANONICAL}
    cols["objid"] = [101, 102, 103, 104, 105]
    cols["ra"] = [150.0, 150.01, 150.01, 150.02 + 2.2 * ARCSEC / math.cos(math.radians(2.0)), 151.0]
    cols["dec"] = [2.0 + 0.5 * ARCSEC, 2.0 + 0.3 * ARCSEC, 2.0 - 1.2 * ARCSEC, 2.0, 2.0]
    cols["type"] = [3, 3, 6, 3, 3]
    cols["clean"] = [1, 0, 1, 1, 1]
    for b, m in zip("ugriz", [18.5, 17.0, 16.2, 15.8, 15.5]):
        cols[f"modelMag_{b}"] = [m, m + 0.5, m + 2, m + 1, m]
        cols[f"modelMagErr_{b}"] = [0.02] * n
        cols[f"petroMag_{b}"] = [m + 0.1] * n
        cols[f"petroMagErr_{b}"] = [0.03] * n
        cols[f"extinction_{b}"] = [0.1] * n
    cols["modelMagErr_u"][0] = 0.35  # u too noisy for galaxy 0
    cols["specz"] = [0.05, np.nan, np.nan, np.nan, np.nan]
    cols["petroR50_r"] = [2.0] * n
    cols["petroR90_r"] = [6.0] * n
    cols["fracDeV_r"] = [0.3] * n
    return cols


def _write(path: Path, cols: dict[str, list]) -> Path:
    table = pa.table({k: pa.array(v) for k, v in cols.items()})
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        from astropy.table import Table

        Table({k: np.asarray(v) for k, v in cols.items()}).write(path, format="fits")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_every_format_reads_the_same(tmp_path, suffix):
    cat = read_catalogue(_write(tmp_path / f"cat{suffix}", _catalogue_rows()))
    assert len(cat) == 5 and cat.absent == ()
    assert cat.columns["objid"].dtype == np.int64 and cat.columns["objid"].tolist() == [101, 102, 103, 104, 105]
    assert cat.columns["modelMag_r"][2] == pytest.approx(18.2)


def test_crossmatch_flags_and_colours(tmp_path):
    cat = read_catalogue(_write(tmp_path / "cat.csv", _catalogue_rows()))
    res = photometry_from_catalogue(IDS, RA, DEC, np.array([np.nan, 0.1, np.nan, np.nan]), catalogue=cat, shard="demo-00000")
    t = {c: res.table.column(c).to_pylist() for c in res.table.column_names}
    assert t["galaxy_id"] == IDS and t["source"] == ["catalogue:cat.csv"] * 4
    assert t["objid"] == [101, 102, 104, None]
    assert t["n_candidates"] == [1, 2, 0, 0]
    assert t["sep_arcsec"][0] == pytest.approx(0.5, abs=1e-6)
    assert t["flags"][0] == int(Flag.PHOT_MAG_ERR_HIGH)
    assert Flag(t["flags"][1]) == Flag.PHOT_MULTIPLE_CANDIDATES | Flag.PHOT_NOT_CLEAN
    assert Flag(t["flags"][2]) == Flag.PHOT_MATCH_FAR
    assert Flag(t["flags"][3]) == Flag.PHOT_NO_MATCH
    # (17.0 - 0.1) - (16.2 - 0.1) for galaxy 0; u-g and u-r withheld because of the u error
    assert t["g_r"][0] == pytest.approx(0.8) and math.isnan(t["u_g"][0]) and math.isnan(t["u_r"][0])
    assert t["r_i"][1] == pytest.approx(0.4)
    assert math.isnan(t["g_r"][2]) and t["modelMag_r"][2] == pytest.approx(17.2)  # far: kept, not trusted
    assert t["quality_ok"] == [True, False, False, False]
    # absolute magnitude only where a redshift exists, and marked with its origin
    assert t["abs_mag_source"] == ["sdss_specz", "catalogue_redshift", None, None]
    assert t["abs_mag_r"][0] == pytest.approx(absolute_magnitude(np.array([16.2]), np.array([0.05]))[0])
    assert t["abs_mag_redshift"][:2] == [0.05, 0.1] and math.isnan(t["abs_mag_r"][3])
    assert res.summary["match_rate"] == 0.5 and res.summary["n_phot_no_match"] == 1


def test_nan_and_sentinel_magnitudes_are_flagged_not_dropped(tmp_path):
    cols = _catalogue_rows()
    cols["modelMag_g"][0] = np.nan
    cols["modelMag_z"][0] = -9999.0
    cat = read_catalogue(_write(tmp_path / "cat.parquet", cols))
    assert np.isnan(cat.columns["modelMag_z"][0])
    res = photometry_from_catalogue(IDS, RA, DEC, catalogue=cat)
    row = res.table.slice(0, 1).to_pylist()[0]
    assert res.table.num_rows == 4 and row["objid"] == 101
    assert Flag.PHOT_MAG_MISSING in Flag(row["flags"])
    assert math.isnan(row["g_r"]) and math.isnan(row["i_z"]) and row["r_i"] == pytest.approx(0.4)
    assert row["quality_ok"] is False  # g-r is the colour quality_ok vouches for


def test_missing_columns_name_file_and_columns(tmp_path):
    cols = _catalogue_rows()
    del cols["modelMagErr_r"], cols["dec"]
    path = _write(tmp_path / "cat.csv", cols)
    with pytest.raises(InputError, match=r"cat\.csv: missing required column\(s\) \['dec', 'modelMagErr_r'\]"):
        read_catalogue(path)


def test_optional_columns_absent_are_named(tmp_path):
    cols = _catalogue_rows()
    for c in ("clean", "fracDeV_r", "specz"):
        del cols[c]
    cat = read_catalogue(_write(tmp_path / "cat.csv", cols))
    res = photometry_from_catalogue(IDS, RA, DEC, catalogue=cat)
    assert res.summary["absent_columns"] == ["clean", "fracDeV_r", "specz"]
    assert Flag.PHOT_NOT_CLEAN not in Flag(res.table.column("flags")[1].as_py())  # unknown, not judged


def test_duplicate_ids_name_both_rows(tmp_path):
    cols = _catalogue_rows()
    cols["objid"][3] = 102
    with pytest.raises(InputError, match=r"cat\.csv: duplicate objid 102 in rows 1 and 3"):
        read_catalogue(_write(tmp_path / "cat.csv", cols))


def test_bad_values_name_column_and_row(tmp_path):
    path = tmp_path / "cat.csv"
    cols = _catalogue_rows()
    _write(path, cols)
    text = path.read_text().splitlines()
    header = text[0].split(",")
    j = header.index('"modelMag_r"')
    fields = text[3].split(",")
    fields[j] = '"bright"'
    text[3] = ",".join(fields)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(InputError, match=r"column 'modelMag_r' row 2: 'bright' is not a number"):
        read_catalogue(path)
    cols["dec"][4] = 95.0
    with pytest.raises(InputError, match=r"row 4 \(objid 105\).*out of range"):
        read_catalogue(_write(tmp_path / "bad.parquet", cols))


def test_column_mapping_for_other_names(tmp_path):
    cols = _catalogue_rows()
    cols["RA_ICRS"] = cols.pop("ra")
    cols["DE_ICRS"] = cols.pop("dec")
    cols["ID"] = cols.pop("objid")
    path = _write(tmp_path / "other.fits", cols)
    with pytest.raises(InputError, match="missing required"):
        read_catalogue(path)
    cat = read_catalogue(path, mapping={"RA_ICRS": "ra", "DE_ICRS": "dec", "ID": "objid"})
    assert cat.columns["objid"].tolist()[:2] == [101, 102]
    with pytest.raises(InputError, match="does not have"):
        read_catalogue(path, mapping={"RAJ2000": "ra"})


def test_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_catalogue(tmp_path / "none.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="unknown catalogue format"):
        read_catalogue(tmp_path / "x.json")
    (tmp_path / "empty.csv").write_text(",".join(CANONICAL) + "\n")
    with pytest.raises(InputError, match="no rows"):
        read_catalogue(tmp_path / "empty.csv")


def test_select_nearest_is_deterministic_on_ties():
    m = select_nearest(2, np.array([0, 0, 1]), np.array([5, 3, 7]), np.array([1.0, 1.0, np.nan]), 1.5, 3.0)
    assert m.index.tolist() == [3, -1] and m.n_candidates.tolist() == [2, 0] and not m.far.any()
