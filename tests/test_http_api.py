"""The HTTP API in process (FastAPI's TestClient) on a real Lance warehouse: records, search, SQL, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest

fastapi = pytest.importorskip("fastapi", reason="the web extras (fastapi) are not installed")
from fastapi.testclient import TestClient  # noqa: E402
from service_data import ENCODER, build_service_warehouse  # noqa: E402

from features.errors import InputError  # noqa: E402
from service.http import Settings, create_app  # noqa: E402

TOKEN = "s3cret-token-for-tests-only"


@pytest.fixture(scope="module")
def served(tmp_path_factory, request):
    from conftest import SHARED

    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    wh, files = build_service_warehouse(tmp_path_factory.mktemp("http") / "wh", SHARED / "data")
    client = TestClient(create_app(Settings(home=wh.root, max_upload_bytes=400_000)),
                        raise_server_exceptions=False)
    return wh, files, client


def _one_line_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"]
    return body["error"]


def test_galaxy_record_has_catalogue_photometry_predictions_and_decoded_flags(served):
    wh, files, client = served
    ids = list(files)
    rec = client.get(f"/galaxies/{ids[0]}").json()
    assert rec["galaxy_id"] == ids[0] and rec["catalogue"]["label_name"] == "Ring"
    assert rec["photometry"]["g_r"] is None  # stored NaN: null in JSON, with its flag named
    assert rec["flags"]["photometry"] == ["PHOT_NO_MATCH"] and rec["flags"]["galaxies"] == []
    assert client.get(f"/galaxies/{ids[1]}").json()["flags"]["galaxies"] == ["IMAGE_NAN"]
    (pred,) = rec["predictions"]
    assert pred["classes"] == ["No ring", "Ring"] and pred["predicted_name"] == "Ring"
    assert pred["probabilities"] == pytest.approx([0.2, 0.8]) and pred["confidence"] == pytest.approx(0.8)
    assert rec["embeddings"] == [ENCODER]
    assert rec["versions"]["galaxies"] == wh.dataset("galaxies").version


def test_image_png_is_the_stored_stamp(served):
    from PIL import Image

    from features.pixels import model_input_uint8

    wh, files, client = served
    gid = next(iter(files))
    r = client.get(f"/galaxies/{gid}/image.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(r.content))), model_input_uint8(wh.read_image(gid)))


def test_similar_matches_the_library_and_applies_where_first(served):
    from warehouse import search

    wh, files, client = served
    gid = list(files)[3]
    got = client.get(f"/galaxies/{gid}/similar", params={"k": 5}).json()
    want = search.similar(wh, gid, k=5, encoder=ENCODER)
    assert [n["galaxy_id"] for n in got["neighbours"]] == want["galaxy_id"].to_list()
    np.testing.assert_allclose([n["distance"] for n in got["neighbours"]], want["distance"].to_numpy(), atol=1e-6)
    assert got["neighbours"][0]["galaxy_id"] == gid and got["encoder"] == ENCODER
    ring = client.get(f"/galaxies/{gid}/similar", params={"k": 20, "where": "label_name = 'Ring'",
                                                          "exclude_self": True}).json()
    rings = set(wh.read("galaxies", columns=["galaxy_id"], where="label_name = 'Ring'").column(0).to_pylist())
    assert {n["galaxy_id"] for n in ring["neighbours"]} == rings - {gid}
    assert {n["features"]["label_name"] for n in ring["neighbours"]} == {"Ring"}


def test_uploaded_image_finds_its_galaxy_at_distance_zero(served):
    _, files, client = served
    gid, path = list(files.items())[2]
    with open(path, "rb") as fh:
        r = client.post("/similar", files={"file": (path.name, fh, "image/png")}, data={"k": "3"})
    body = r.json()
    assert r.status_code == 200, body
    assert body["query"] == path.name and body["neighbours"][0]["galaxy_id"] == gid
    assert body["neighbours"][0]["distance"] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(("name", "payload", "status", "words"), [
    ("q.png", b"not a png at all", 400, "unreadable image"),
    ("q.txt", b"hello", 400, "not an image file name"),
    ("q.png", b"", 400, "empty"),
    ("big.png", b"\0" * 500_000, 413, "limit"),
])
def test_bad_uploads_are_one_line_4xx(served, name, payload, status, words):
    _, _, client = served
    r = client.post("/similar", files={"file": (name, payload, "image/png")})
    assert words in _one_line_error(r, status)


def test_oversized_picture_is_refused_from_its_header(served):
    from PIL import Image

    _, _, client = served
    buf = io.BytesIO()
    Image.new("RGB", (2048, 16)).save(buf, format="PNG")
    r = client.post("/similar", files={"file": ("wide.png", buf.getvalue(), "image/png")})
    assert "1024 px" in _one_line_error(r, 400)


@pytest.mark.parametrize("query", [
    "COPY galaxies TO 'stolen.csv'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "ATTACH 'x.db' AS x",
    "INSTALL httpfs",
    "SET enable_external_access = true",
    "DROP TABLE galaxies",
    "SELECT 1; DROP TABLE galaxies",
    "CREATE TABLE t AS SELECT 1",
    "EXPLAIN DELETE FROM galaxies",
    "PRAGMA database_list",
    "SELECT * FROM glob('/*')",
])
def test_sql_attacks_over_http_are_refused(served, query, tmp_path, monkeypatch):
    wh, _, client = served
    monkeypatch.chdir(tmp_path)
    before = wh.versions()
    _one_line_error(client.post("/sql", json={"query": query}), 400)
    assert wh.versions() == before and not list(tmp_path.iterdir())


def test_sql_json_arrow_parquet_and_the_row_cap(served):
    import pyarrow.parquet as pq

    wh, files, client = served
    q = "SELECT galaxy_id, ra, data FROM galaxies JOIN images USING (galaxy_id) ORDER BY galaxy_id"
    js = client.post("/sql", json={"query": q, "limit": 5}).json()
    assert js["truncated"] is True and js["limit"] == 5 and len(js["rows"]) == 5
    assert js["columns"] == ["galaxy_id", "ra", "data_bytes"] and js["rows"][0]["data_bytes"] > 1000
    assert js["rows"][0]["galaxy_id"] == sorted(files)[0]
    arrow = client.post("/sql", json={"query": q, "format": "arrow"})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.num_rows == len(files) and arrow.headers["x-truncated"] == "false"
    parquet = client.post("/sql", json={"query": "SELECT count(*) AS n FROM galaxy_features", "format": "parquet"})
    assert pq.read_table(io.BytesIO(parquet.content)).column("n").to_pylist() == [len(files)]
    capped = TestClient(create_app(Settings(home=wh.root, sql_max_rows=3)))
    r = capped.post("/sql", json={"query": "SELECT * FROM galaxies", "limit": 1000}).json()
    assert r["limit"] == 3 and len(r["rows"]) == 3 and r["truncated"]


def test_time_travel_pins_table_versions(served):
    wh, files, client = served
    gid = sorted(files)[4]
    old = client.get(f"/galaxies/{gid}").json()
    v_old = old["versions"]["galaxies"]
    row = wh.read("galaxies", where=f"galaxy_id = '{gid}'").drop_columns(["code_version", "run_id", "written_at"])
    wh.upsert("galaxies", row.set_column(row.schema.get_field_index("ra"), "ra", pa.array([123.25])))
    new = client.get(f"/galaxies/{gid}").json()
    assert new["catalogue"]["ra"] == 123.25 and new["versions"]["galaxies"] == v_old + 1
    pinned = client.get(f"/galaxies/{gid}", params={"version": f"galaxies:{v_old}"}).json()
    assert pinned["catalogue"]["ra"] == old["catalogue"]["ra"] != 123.25
    sql = client.post("/sql", json={"query": f"SELECT ra FROM galaxies WHERE galaxy_id = '{gid}'",
                                    "versions": {"galaxies": v_old}}).json()
    assert sql["rows"] == [{"ra": old["catalogue"]["ra"]}] and sql["versions"]["galaxies"] == v_old
    assert "no version 999" in _one_line_error(
        client.get(f"/galaxies/{gid}", params={"version": "galaxies:999"}), 400)
    assert "TABLE:N" in _one_line_error(client.get(f"/galaxies/{gid}", params={"version": "galaxies"}), 400)


@pytest.mark.parametrize(("path", "params", "status", "words"), [
    ("/galaxies/rings:nope", {}, 404, "no galaxy"),
    ("/galaxies/rings:nope/image.png", {}, 404, "no galaxy"),
    ("/galaxies/rings:nope/similar", {}, 404, "no galaxy"),
    ("/galaxies/{g}/similar", {"k": 0}, 422, "k"),
    ("/galaxies/{g}/similar", {"k": "many"}, 422, "k"),
    ("/galaxies/{g}/similar", {"k": 100_000}, 400, "at most"),
    ("/galaxies/{g}/similar", {"where": "1=1) UNION SELECT galaxy_id FROM galaxies --"}, 400, "one SQL expression"),
    ("/galaxies/{g}/similar", {"where": "no_such_column > 1"}, 400, "no_such_column"),
    ("/galaxies/{g}/similar", {"encoder": "dinov2_vitb14"}, 400, "no embeddings"),
    ("/no/such/path", {}, 404, "Not Found"),
])
def test_bad_requests_are_one_line_json(served, path, params, status, words):
    _, files, client = served
    r = client.get(path.format(g=next(iter(files))), params=params)
    assert words in _one_line_error(r, status)


def test_sql_body_validation_is_one_line(served):
    _, _, client = served
    assert "query" in _one_line_error(client.post("/sql", json={}), 422)
    assert "limit" in _one_line_error(client.post("/sql", json={"query": "SELECT 1", "limit": -1}), 422)
    assert "format" in _one_line_error(client.post("/sql", json={"query": "SELECT 1", "format": "xml"}), 422)
    assert _one_line_error(client.post("/sql", content=b"{not json", headers={"content-type": "application/json"}), 422)


def test_tables_healthz_openapi_and_page(served):
    wh, _, client = served
    tables = {t["table"]: t for t in client.get("/tables").json()["tables"]}
    assert tables["galaxies"]["rows"] == wh.count("galaxies")
    assert tables["galaxies"]["version"] == wh.dataset("galaxies").version
    assert client.get("/healthz").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/galaxies/{galaxy_id}", "/galaxies/{galaxy_id}/similar", "/similar", "/sql", "/tables"} <= set(spec["paths"])
    assert "SQLRequest" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="search"' in page.text
    assert "searchId" in client.get("/static/app.js").text


def test_token_is_required_when_configured_and_off_loopback(served):
    wh, files, _ = served
    with pytest.raises(InputError, match="needs an API token"):
        Settings(home=wh.root, host="0.0.0.0")
    settings = Settings(home=wh.root, host="0.0.0.0", token=TOKEN)
    assert TOKEN not in repr(settings)
    client = TestClient(create_app(settings))
    gid = next(iter(files))
    assert "token" in _one_line_error(client.get(f"/galaxies/{gid}"), 401)
    assert "token" in _one_line_error(client.get("/tables", headers={"Authorization": "Bearer wrong"}), 401)
    assert "token" in _one_line_error(client.post("/sql", json={"query": "SELECT 1"}), 401)
    ok = client.get(f"/galaxies/{gid}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["galaxy_id"] == gid
    assert client.get("/healthz").status_code == 200  # liveness stays open


def test_read_token_rules(tmp_path, monkeypatch):
    from service.http.settings import TOKEN_ENV, read_token

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token() is None
    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(InputError, match="16 characters"):
        read_token()
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    assert read_token(f) == TOKEN
    with pytest.raises(InputError, match="does not exist"):
        read_token(tmp_path / "missing")


def test_json_has_no_nan(served):
    _, _, client = served
    r = client.post("/sql", json={"query": "SELECT galaxy_id, g_r FROM photometry ORDER BY galaxy_id"})
    values = [row["g_r"] for row in r.json()["rows"]]
    assert None in values and all(v is None or math.isfinite(v) for v in values)


def test_image_outline_draws_the_true_mask_edge(served):
    from PIL import Image
    from scipy.ndimage import binary_erosion
    from service_data import _fill

    from warehouse.images import encode_image

    wh, files, client = served
    gid, other = sorted(files)[6], sorted(files)[7]
    h, w = wh.read_image(gid).shape[:2]
    yy, xx = np.mgrid[:h, :w]
    mask = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 5) ** 2
    _, png = encode_image(mask.astype(np.uint8) * 255)
    wh.upsert("truth", _fill("truth", 1, galaxy_id=[gid], label=[1], label_name=["Ring"], stamp_size=[h],
                             mask_area_px=[int(mask.sum())], mask_png=[png]))
    r = client.get(f"/galaxies/{gid}/image.png", params={"outline": "truth"})
    assert r.status_code == 200, r.text
    rgb = np.array(Image.open(io.BytesIO(r.content)))
    edge = mask & ~binary_erosion(mask)
    assert (rgb[edge] == (0, 255, 0)).all()
    plain = np.array(Image.open(io.BytesIO(client.get(f"/galaxies/{gid}/image.png").content)))
    np.testing.assert_array_equal(rgb[~edge], plain[~edge])
    assert "no true mask" in _one_line_error(client.get(f"/galaxies/{other}/image.png",
                                                        params={"outline": "truth"}), 404)
    assert "outline" in _one_line_error(client.get(f"/galaxies/{gid}/image.png", params={"outline": "x"}), 422)
