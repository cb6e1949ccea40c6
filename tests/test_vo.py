"""The ``/vo/`` services as astronomers meet them: pyvo and STILTS against a real ``serve`` process on loopback.

The warehouse is the HTTP tests' (real ring-galaxy stamps, a real random-weights encoder, a gate-passing
model), with the DECaLS pixel scale on every galaxy but one (its FITS has no celestial WCS) and one
galaxy without a position (in no cone).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the dev extras (httpx) are not installed")
pyvo = pytest.importorskip("pyvo")
from astropy.coordinates import SkyCoord  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.io.votable import parse  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from service_data import build_service_warehouse  # noqa: E402
from test_http_server import Server  # noqa: E402

DECALS_PXSCALE = 0.262
NO_SCALE, NO_POSITION = 10, 11  # galaxy indices (sorted ids)


@pytest.fixture(scope="module")
def vo(tmp_path_factory):
    import pyarrow as pa
    from conftest import SHARED

    from features.flags import Flag
    from warehouse.schemas import PROVENANCE_COLUMNS

    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    tmp = tmp_path_factory.mktemp("vo")
    wh, files = build_service_warehouse(tmp / "wh", SHARED / "data")
    ids = sorted(files)
    gal = wh.dataset("galaxies").to_table().drop_columns(list(PROVENANCE_COLUMNS)).sort_by("galaxy_id")
    assert gal.column("galaxy_id").to_pylist() == ids
    n = gal.num_rows
    px = [None if i == NO_SCALE else DECALS_PXSCALE for i in range(n)]
    ra, dec, flags = gal.column("ra").to_pylist(), gal.column("dec").to_pylist(), gal.column("flags").to_pylist()
    ra[NO_POSITION] = dec[NO_POSITION] = None
    flags[NO_POSITION] |= int(Flag.POSITION_UNKNOWN)
    for name, values in (("pxscale", px), ("ra", ra), ("dec", dec), ("flags", flags)):
        i = gal.schema.get_field_index(name)
        gal = gal.set_column(i, gal.schema.field(i), pa.array(values, gal.schema.field(i).type))
    wh.upsert("galaxies", gal)
    cwd = tmp / "cwd"
    cwd.mkdir()
    srv = Server(wh.root, cwd)
    yield srv, wh, ids, {"ra": ra, "dec": dec}, cwd
    srv.stop()


UCD1 = ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN", "VOX:")


def _votable(content: bytes):
    """The parsed VOTable; any astropy warning (a spec violation) fails, but W06 on the UCD1 words that SCS
    1.03 and SIA 1.0 require (astropy checks UCD1+ only)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vot = parse(io.BytesIO(content), verify="warn")
    problems = [str(w.message) for w in caught if not ("W06" in str(w.message) and any(u in str(w.message)
                                                                                       for u in UCD1))]
    assert not problems, problems
    return vot


# ------------------------------------------------------------------------------------------- SCS
def test_scs_with_pyvo_finds_the_galaxy_with_its_id_and_position(vo):
    srv, _wh, ids, pos, _ = vo
    scs = pyvo.dal.SCSService(f"{srv.url}/vo/scs")
    target = SkyCoord(pos["ra"][3], pos["dec"][3], unit="deg")
    res = scs.search(pos=target, radius=0.01)
    assert len(res) == 1
    rec = res[0]
    assert rec.id == ids[3]
    assert rec.pos.separation(target).arcsec < 1e-6
    table = res.to_table()
    assert table["ra"].unit == "deg" and table["_r"].unit == "deg"
    fields = {f.name: f for f in res.fielddescs}
    assert [f.ucd for f in fields.values()].count("ID_MAIN") == 1
    assert fields["ra"].ucd == "POS_EQ_RA_MAIN" and fields["dec"].ucd == "POS_EQ_DEC_MAIN"
    assert fields["gini"].ucd == "src.morph.param" and fields["gini"].description
    assert fields["g_r"].unit == "mag" and fields["predicted_name"].description
    assert table["predicted_name"][0] in ("Ring", "No ring") and table["model_name"][0] == "dinov2_probe"


def test_scs_metadata_empty_cone_and_positionless_galaxy(vo):
    srv, _wh, ids, _pos, _ = vo
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        meta = _votable(c.get("/vo/scs", params={"RA": 10, "DEC": 0, "SR": 0}).content).get_first_table()
        assert len(meta.array) == 0 and {"galaxy_id", "ra", "dec", "gini", "_r"} <= {f.name for f in meta.fields}
        empty = _votable(c.get("/vo/scs", params={"RA": 200, "DEC": -60, "SR": 0.5}).content).get_first_table()
        assert len(empty.array) == 0
        everything = _votable(c.get("/vo/scs", params={"ra": 0, "dec": 0, "sr": 180}).content).get_first_table()
        found = set(everything.array["galaxy_id"])
        assert found == set(ids) - {ids[NO_POSITION]}
        assert list(everything.array["_r"]) == sorted(everything.array["_r"])  # nearest first
        few = _votable(c.get("/vo/scs", params={"RA": 0, "DEC": 0, "SR": 180, "VERB": 1, "MAXREC": 2}).content)
        assert [f.name for f in few.get_first_table().fields] == ["galaxy_id", "ra", "dec", "_r"]
        assert len(few.get_first_table().array) == 2
        assert [i.value for i in few.resources[0].infos if i.name == "QUERY_STATUS"] == ["OVERFLOW"]


@pytest.mark.parametrize("params", [{"RA": "abc", "DEC": 0, "SR": 1}, {"RA": 10, "DEC": 95, "SR": 1},
                                    {"RA": 10, "DEC": 0}, {"RA": 1, "DEC": 1, "SR": 1, "MODEL": "x' OR 1=1 --"}])
def test_scs_errors_are_votables_with_an_error_info(vo, params):
    srv, *_ = vo
    r = httpx.get(f"{srv.url}/vo/scs", params=params, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-votable+xml")
    errors = [i for i in _votable(r.content).infos if i.name == "Error"]
    assert len(errors) == 1 and "\n" not in errors[0].value


def test_openapi_describes_the_cone_search_columns_from_the_registry(vo):
    srv, *_ = vo
    doc = httpx.get(f"{srv.url}/openapi.json", timeout=30).json()["paths"]["/vo/scs"]["get"]["description"]
    assert "| `ra` | deg | pos.eq.ra;meta.main | right ascension, ICRS |" in doc
    assert "| `gini` |" in doc and "| `morph_ok` |" in doc


def test_scs_error_surfaces_in_pyvo(vo):
    srv, *_ = vo
    with pytest.raises(pyvo.DALQueryError, match="MODEL must be"):
        pyvo.dal.SCSService(f"{srv.url}/vo/scs").search(pos=(10.0, 0.0), radius=1.0, MODEL="x' OR 1=1 --")


# ------------------------------------------------------------------------------------------- similar
def test_similar_by_id_and_by_position(vo):
    srv, _wh, ids, pos, _ = vo
    r = httpx.get(f"{srv.url}/vo/similar", params={"ID": ids[2], "K": 4}, timeout=60)
    table = _votable(r.content).get_first_table()
    assert len(table.array) == 4 and table.array["galaxy_id"][0] == ids[2]
    assert table.array["distance"][0] < 1e-5 and list(table.array["rank"]) == [1, 2, 3, 4]
    ucds = {f.name: f.ucd for f in table.fields}
    assert ucds["galaxy_id"] == "ID_MAIN" and ucds["ra"] == "POS_EQ_RA_MAIN"
    # RA/DEC: the nearest galaxy is the query; pyvo's cone search client reads it like a cone
    near = pyvo.dal.SCSService(f"{srv.url}/vo/similar").search(
        pos=SkyCoord(pos["ra"][5] + 0.001, pos["dec"][5], unit="deg"), radius=0.1, K=3)
    assert len(near) == 3 and near[0].id == ids[5]
    with pytest.raises(pyvo.DALQueryError, match="no galaxy"):
        pyvo.dal.SCSService(f"{srv.url}/vo/similar").search(pos=(200.0, -60.0), radius=0.1)
    no_table = _votable(httpx.get(f"{srv.url}/vo/similar", params={"ID": ids[0], "ENCODER": "nope"}, timeout=30).content)
    assert "no embeddings for encoder 'nope'" in next(i.value for i in no_table.infos if i.name == "Error")
    missing = _votable(httpx.get(f"{srv.url}/vo/similar", params={"ID": "nope"}, timeout=30).content)
    assert "no galaxy 'nope'" in next(i.value for i in missing.infos if i.name == "Error")


# ------------------------------------------------------------------------------------------- SIA
def test_sia_with_pyvo_downloads_a_fits_with_a_valid_wcs(vo):
    srv, wh, ids, pos, _ = vo
    sia = pyvo.dal.SIAService(f"{srv.url}/vo/sia")
    res = sia.search(pos=(pos["ra"][4], pos["dec"][4]), size=0.01)
    assert {r.format for r in res} == {"image/fits", "image/png"} and {r["galaxy_id"] for r in res} == {ids[4]}
    rec = next(r for r in res if r.format == "image/fits")
    assert rec.pos.separation(SkyCoord(pos["ra"][4], pos["dec"][4], unit="deg")).arcsec < 1e-6
    assert [int(n.to_value("pix")) for n in rec.naxis] == [256, 256, 3] and rec.naxes == 3
    assert rec["scale"][0] == pytest.approx(DECALS_PXSCALE / 3600)
    with fits.open(io.BytesIO(httpx.get(rec.getdataurl(), timeout=60).content)) as hdul:
        data, header = hdul[0].data, hdul[0].header
        wcs = WCS(header).celestial
    assert data.shape == (3, 256, 256) and header["BAND1"] == "g"
    assert wcs.has_celestial and list(wcs.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    centre = wcs.pixel_to_world((256 - 1) / 2, (256 - 1) / 2)
    assert centre.separation(SkyCoord(pos["ra"][4], pos["dec"][4], unit="deg")).arcsec < 1e-6
    assert wcs.proj_plane_pixel_scales()[0].to_value("arcsec") == pytest.approx(DECALS_PXSCALE)
    # north up: one pixel up (FITS +y) is north, one pixel right (+x) is west (east left)
    up, right = wcs.pixel_to_world(127.5, 128.5), wcs.pixel_to_world(128.5, 127.5)
    assert up.dec > centre.dec and right.ra < centre.ra
    # the FITS rows are the stored rows flipped: FITS row 1 is the stored bottom row
    stored = wh.read_image(ids[4])
    assert np.array_equal(data[0, 0], stored[-1, :, 0])
    png = next(r for r in res if r.format == "image/png")
    assert httpx.get(png.getdataurl(), timeout=60).content[:4] == b"\x89PNG"


def test_sia_metadata_unknown_scale_and_errors(vo):
    srv, _wh, ids, pos, _ = vo
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        meta = _votable(c.get("/vo/sia", params={"FORMAT": "METADATA"}).content)
        table = meta.get_first_table()
        assert len(table.array) == 0
        ucds = {f.ucd for f in table.fields}
        assert {"VOX:Image_Title", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN", "VOX:Image_Naxes", "VOX:Image_Naxis",
                "VOX:Image_Scale", "VOX:Image_Format", "VOX:Image_AccessReference"} <= ucds
        assert {p.name for p in meta.resources[0].params} >= {"INPUT:POS", "INPUT:SIZE", "INPUT:FORMAT"}
        only_fits = _votable(c.get("/vo/sia", params={"POS": f"{pos['ra'][NO_SCALE]},{pos['dec'][NO_SCALE]}",
                                                      "SIZE": "0.001", "FORMAT": "image/fits"}).content)
        row = only_fits.get_first_table().array
        assert list(row["format"]) == ["image/fits"] and row["galaxy_id"][0] == ids[NO_SCALE]
        assert np.ma.is_masked(row["scale"][0]) or len(row["scale"][0]) == 0
        header = fits.getheader(io.BytesIO(c.get(row["access_url"][0]).content))
        assert "CTYPE1" not in header and "pixel scale is unknown" in str(header["COMMENT"])
        assert header["RA"] == pytest.approx(pos["ra"][NO_SCALE])
        bad = _votable(c.get("/vo/sia", params={"POS": "10", "SIZE": 1}).content)
        assert next(i.value for i in bad.infos if i.name == "Error").startswith("POS must be ra,dec")
        assert c.get("/vo/sia/image", params={"ID": "nope"}).status_code == 404
    with pytest.raises(pyvo.DALQueryError):
        pyvo.dal.SIAService(f"{srv.url}/vo/sia").search(pos=(10, 0), size=1, format="image/jpeg")


# ------------------------------------------------------------------------------------------- TAP
def test_tap_with_pyvo_cone_top_join_and_errors(vo):
    srv, wh, ids, pos, _ = vo
    tap = pyvo.dal.TAPService(f"{srv.url}/vo/tap")
    ra, dec = pos["ra"][6], pos["dec"][6]
    cone = tap.run_sync(f"SELECT galaxy_id, ra, dec, g_r FROM galaxy_features "
                        f"WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra}, {dec}, 0.01))")
    assert list(cone["galaxy_id"]) == [ids[6]]
    table = cone.to_table()
    assert table["ra"].unit == "deg" and table["g_r"].unit == "mag"
    assert {f.name: f.ucd for f in cone.fielddescs}["ra"] == "pos.eq.ra;meta.main"
    top = tap.run_sync("SELECT TOP 3 galaxy_id, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 0, 0)) AS d "
                       "FROM galaxy_features WHERE ra IS NOT NULL ORDER BY d")
    d = list(top["d"])
    assert len(d) == 3 and d == sorted(d)
    truth = wh.sql("SELECT min(ang_sep_arcsec(ra, dec, 0, 0)) / 3600 AS d FROM galaxies")["d"][0]
    assert d[0] == pytest.approx(truth)
    join = tap.run_sync("SELECT f.galaxy_id, f.label_name, p.predicted_name, p.confidence, SQRT(POWER(f.ra, 2)) AS x "
                        "FROM galaxy_features AS f JOIN latest_predictions AS p ON f.galaxy_id = p.galaxy_id "
                        "WHERE p.confidence > 0.5 ORDER BY f.galaxy_id")
    assert len(join) == len(ids) and join.to_table()["confidence"].description
    with pytest.raises(pyvo.DALQueryError, match="ADQL syntax error"):
        tap.run_sync("SELECT FROM WHERE galaxies")
    with pytest.raises(pyvo.DALQueryError, match="only a POINT in a CIRCLE is supported here, not BOX"):
        tap.run_sync("SELECT * FROM galaxies WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), BOX('ICRS', 1, 2, 3, 4))")
    with warnings.catch_warnings(record=True):
        capped = tap.run_sync("SELECT galaxy_id FROM galaxies", maxrec=2)
    assert len(capped) == 2 and capped.query_status == "OVERFLOW"


def test_tap_vosi_tables_capabilities_availability(vo):
    srv, *_ = vo
    tap = pyvo.dal.TAPService(f"{srv.url}/vo/tap")
    tables = tap.tables
    names = set(tables.keys())
    assert {"galaxies", "galaxy_features", "latest_predictions", "photometry"} <= names
    cols = {c.name: c for c in tables["galaxy_features"].columns}
    assert cols["ra"].unit == "deg" and cols["ra"].ucd == "pos.eq.ra;meta.main" and cols["gini"].description
    assert all(c.description for c in cols.values())
    caps = tap.capabilities
    assert any(c.standardid.startswith("ivo://ivoa.net/std/TAP") for c in caps)
    from vo_models.vosi.availability.models import Availability

    assert Availability.from_xml(httpx.get(f"{srv.url}/vo/tap/availability", timeout=30).content).available
    assert tap.hardlimit == 10_000


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT 1; COPY galaxies TO 'leak.csv'",
    "WITH x AS (SELECT 1) INSERT INTO galaxies SELECT * FROM galaxies",
    "COPY (SELECT * FROM galaxies) TO 'leak.parquet'",
    "ATTACH 'other.duckdb'",
    "SELECT * FROM galaxies; DROP TABLE galaxies",
])
def test_sql_attacks_through_adql_write_nothing(vo, query):
    srv, wh, _, _, cwd = vo
    before = wh.versions()
    r = httpx.post(f"{srv.url}/vo/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}, timeout=30)
    assert r.status_code == 400
    status = [i for i in _votable(r.content).resources[0].infos if i.name == "QUERY_STATUS"]
    assert status[0].value == "ERROR" and "\n" not in status[0].content
    assert wh.versions() == before
    assert sorted(p.name for p in cwd.iterdir()) == ["server.log"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_junk_requests_to_every_vo_route_are_votable_errors_never_500(vo, method):
    srv, *_ = vo
    junk = [{}, {"RA": "nan", "DEC": "inf", "SR": "-1"}, {"POS": "a,b,c", "SIZE": "x", "FORMAT": "image/gif"},
            {"ID": "\x00' OR 1=1 --", "K": "0"}, {"LANG": "SQL", "QUERY": "SELECT 1"}, {"MAXREC": "-5", "VERB": "9"},
            {"LANG": "ADQL", "QUERY": "SELECT TOP x FROM"}, {"LANG": "ADQL", "QUERY": "SELECT 1", "RESPONSEFORMAT": "csv"}]
    routes = ["/vo/scs", "/vo/similar", "/vo/sia", "/vo/sia/image", "/vo/tap/sync"]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for route in routes:
            if method == "POST" and route != "/vo/tap/sync":
                continue
            for params in junk:
                r = c.get(route, params=params) if method == "GET" else c.post(route, data=params)
                assert r.status_code < 500, (route, params, r.text[:200])
                if r.status_code >= 400 or b'name="Error"' in r.content:
                    errors = [i for i in _votable(r.content).infos if i.name == "Error"]
                    assert len(errors) == 1 and "\n" not in errors[0].value, (route, params)
    assert "Traceback" not in srv.output()


# ------------------------------------------------------------------------------------------- token
def test_the_token_guards_vo(vo, tmp_path):
    _srv, wh, ids, _pos, _ = vo
    secret = "vo-test-token-0123456789"
    (tmp_path / "token").write_text(secret + "\n")
    guarded = Server(wh.root, tmp_path, "--token-file", str(tmp_path / "token"))
    try:
        for path in ("/vo/scs?RA=1&DEC=2&SR=1", "/vo/tap/sync?LANG=ADQL&QUERY=SELECT%201", "/vo/tap/tables",
                     f"/vo/sia/image?ID={ids[0]}", "/vo/similar?ID=x"):
            assert httpx.get(guarded.url + path, timeout=30).status_code == 401, path
        ok = httpx.get(f"{guarded.url}/vo/scs", params={"RA": 1, "DEC": 2, "SR": 1}, timeout=30,
                       headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
    finally:
        guarded.stop()


# ------------------------------------------------------------------------------------------- STILTS
STILTS = shutil.which("stilts")


@pytest.mark.skipif(STILTS is None, reason="stilts is not installed (Debian package stilts)")
def test_stilts_cone_and_tapquery(vo, tmp_path):
    srv, _wh, ids, pos, _ = vo
    cone_out = tmp_path / "cone.vot"
    subprocess.run([STILTS, "cone", f"serviceurl={srv.url}/vo/scs", f"lon={pos['ra'][7]}", f"lat={pos['dec'][7]}",
                    "radius=0.01", "verb=2", f"out={cone_out}", "ofmt=votable"], check=True, timeout=180,
                   capture_output=True)
    table = parse(str(cone_out)).get_first_table()
    assert list(table.array["galaxy_id"]) == [ids[7]]
    tap_out = tmp_path / "tap.vot"
    proc = subprocess.run(
        [STILTS, "tapquery", f"tapurl={srv.url}/vo/tap", "sync=true", f"out={tap_out}", "ofmt=votable",
         "adql=SELECT TOP 5 galaxy_id, ra, dec, g_r FROM galaxy_features WHERE ra IS NOT NULL ORDER BY galaxy_id"],
        timeout=180, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fields = {f.name: f for f in parse(str(tap_out)).get_first_table().fields}
    assert fields["ra"].unit == "deg" and fields["ra"].ucd == "pos.eq.ra;meta.main" and fields["g_r"].unit == "mag"
    assert len(parse(str(tap_out)).get_first_table().array) == 5
