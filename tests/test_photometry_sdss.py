"""The SkyServer client replayed through astroquery's real HTTP path against a local server (no network)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from features.errors import OfflineError
from features.flags import Flag
from features.photometry import SDSSConfig, ServiceError, SkyServerClient, photometry_from_sdss
from features.photometry.sdss import MalformedResponse, build_sql, parse_response

DATA = Path(__file__).parent / "data" / "sdss"
RA = np.array([331.6640552, 334.5365780, 341.9024899, 341.3433051])
DEC = np.array([-0.4841547, -1.1890307, -1.1274181, 0.6581762])
IDS = [f"galaxy10:{i:05d}" for i in range(4)]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        server.requests.append(self.path)  # type: ignore[attr-defined]
        if not server.script:  # type: ignore[attr-defined]
            status, body, delay = 503, "no scripted response left", 0.0
        else:
            status, body, delay = server.script.pop(0)  # type: ignore[attr-defined]
        if delay:
            time.sleep(delay)
        try:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args) -> None:
        pass


class FakeSkyServer:
    """A local HTTP server answering each GET with the next scripted (status, body, delay)."""

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.script = []
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def queue(self, *items: tuple[int, str, float] | str) -> None:
        for item in items:
            self.httpd.script.append((200, (DATA / item).read_text(), 0.0) if isinstance(item, str) else item)

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def sql(self, k: int) -> str:
        query = urllib.parse.urlparse(self.requests[k]).query
        return urllib.parse.parse_qs(query)["cmd"][0]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def sky(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeSkyServer()
    yield server
    server.stop()


def _client(tmp_path: Path, url: str, **kw) -> SkyServerClient:
    cfg = dict(base_url=url, min_interval_s=0.0, backoff_base_s=0.01, backoff_max_s=0.05,
               connect_timeout_s=2.0, read_timeout_s=2.0)
    cfg.update(kw)
    return SkyServerClient(tmp_path / "cache", SDSSConfig(**cfg))


def _rows(result) -> list[dict]:
    """Rows with NaN replaced by None, so that two results compare equal value by value."""
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in result.table.to_pylist()]


def _col(result, name):
    return result.table.column(name).to_pylist()


def test_normal_batch(sky, tmp_path):
    sky.queue("batch_normal.csv")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url), shard="galaxy10-00000")
    assert len(sky.requests) == 1
    assert sky.requests[0].startswith("/dr17/en/tools/search/x_results.aspx")
    assert "fGetNearbyObjEq" in sky.sql(0) and "(3,341.343305,0.658176)" in sky.sql(0)
    assert _col(res, "galaxy_id") == IDS
    assert _col(res, "source") == ["sdss_dr17"] * 4
    assert _col(res, "objid")[:3] == [1237663543145201848, 1237663543682597025, 1237663544219467911]
    assert _col(res, "objid")[3] is None
    np.testing.assert_allclose(_col(res, "sep_arcsec")[:3], [0.31, 0.52, 0.84], atol=1e-3)
    flags = _col(res, "flags")
    assert flags[0] == 0
    assert flags[1] == 0  # the -9999 Petrosian u is not a model magnitude
    assert Flag(flags[2]) == Flag.PHOT_NOT_CLEAN | Flag.PHOT_NOT_GALAXY | Flag.PHOT_MAG_ERR_HIGH
    assert Flag(flags[3]) == Flag.PHOT_NO_MATCH
    # extinction-corrected model colour of galaxy 0: (16.92 - 0.274) - (16.10 - 0.190)
    assert _col(res, "g_r")[0] == pytest.approx(0.736, abs=1e-9)
    assert np.isnan(_col(res, "petroMag_u")[1]) and np.isnan(_col(res, "g_r")[3])
    assert np.isnan(_col(res, "u_g")[2]) and np.isfinite(_col(res, "g_r")[2])  # u error 0.45 > 0.2
    assert _col(res, "quality_ok") == [True, True, False, False]
    assert _col(res, "specz")[1] == pytest.approx(0.0412877)
    assert _col(res, "abs_mag_source") == [None, "sdss_specz", None, None]
    assert res.summary["fetch"]["n_requests"] == 1 and res.summary["match_rate"] == 0.75


def test_no_match_batch_is_cached(sky, tmp_path):
    sky.queue("no_match.csv")
    client = _client(tmp_path, sky.url)
    res = photometry_from_sdss(IDS, RA, DEC, client=client)
    assert all(Flag(f) == Flag.PHOT_NO_MATCH for f in _col(res, "flags"))
    assert res.table.num_rows == 4 and _col(res, "n_candidates") == [0] * 4
    again = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url))
    assert len(sky.requests) == 1 and again.summary["fetch"]["n_cached"] == 1


def test_several_candidates_and_far_match(sky, tmp_path):
    sky.queue("multiple.csv")
    res = photometry_from_sdss(IDS[:2], RA[:2], DEC[:2], client=_client(tmp_path, sky.url))
    assert _col(res, "n_candidates") == [2, 0]
    assert _col(res, "objid")[0] == 1237663543145201848  # the nearest of the two
    assert Flag(_col(res, "flags")[0]) == Flag.PHOT_MULTIPLE_CANDIDATES
    assert Flag(_col(res, "flags")[1]) == Flag.PHOT_MATCH_FAR
    assert _col(res, "sep_arcsec")[1] == pytest.approx(2.2, abs=1e-3)
    assert np.isfinite(_col(res, "modelMag_r")[1]) and np.isnan(_col(res, "g_r")[1])  # kept, not trusted
    assert _col(res, "quality_ok") == [True, False]


def test_malformed_response_flags_batch_and_is_not_cached(sky, tmp_path):
    sky.queue("malformed.html")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url))
    assert all(Flag(f) == Flag.PHOT_QUERY_FAILED for f in _col(res, "flags"))
    assert res.summary["fetch"]["n_failed_batches"] == 1 and "malformed" in res.summary["fetch"]["failures"][0]
    assert not list((tmp_path / "cache").rglob("*.csv"))
    sky.queue("batch_normal.csv")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url))
    assert len(sky.requests) == 2 and _col(res, "flags")[0] == 0


def test_server_error_then_success(sky, tmp_path):
    sky.queue((500, "Internal Server Error", 0.0), "batch_normal.csv")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url))
    fetch = res.summary["fetch"]
    assert (fetch["n_requests"], fetch["n_retries"], fetch["n_failed_batches"]) == (2, 1, 0)
    assert fetch["backoff_s"] == pytest.approx(0.01)
    assert _col(res, "flags")[0] == 0


def test_timeout_then_success(sky, tmp_path):
    sky.queue((200, (DATA / "no_match.csv").read_text(), 1.5), "batch_normal.csv")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url, read_timeout_s=0.3))
    fetch = res.summary["fetch"]
    assert (fetch["n_requests"], fetch["n_retries"]) == (2, 1)
    assert _col(res, "objid")[0] == 1237663543145201848  # the late "no match" answer was not used


def test_interrupted_run_resumes_from_cache(sky, tmp_path):
    sky.queue("resume_batch0.csv", (500, "down", 0.0))
    with pytest.raises(OfflineError, match=r"1 batch\(es\) in a row.*1 were stored"):
        photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url, batch_size=2, max_retries=0,
                                                            max_consecutive_failures=1))
    assert len(sky.requests) == 2 and len(list((tmp_path / "cache").rglob("*.csv"))) == 1
    sky.queue("resume_batch1.csv")
    res = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url, batch_size=2))
    assert len(sky.requests) == 3  # batch 0 came from the cache: one new request
    assert "(0,341.902490,-1.127418)" in sky.sql(2)
    assert res.summary["fetch"]["n_cached"] == 1 and res.summary["n_matched"] == 4
    again = photometry_from_sdss(IDS, RA, DEC, client=_client(tmp_path, sky.url, batch_size=2))
    assert len(sky.requests) == 3 and _rows(again) == _rows(res)


def test_offline_fails_fast_naming_cache_and_catalogue(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    slept = []
    client = SkyServerClient(tmp_path / "cache", SDSSConfig(base_url=f"http://127.0.0.1:{port}"), sleep=slept.append)
    with pytest.raises(OfflineError) as err:
        client.fetch(RA, DEC)
    assert str(tmp_path / "cache") in str(err.value) and "catalog" in str(err.value)
    assert slept == []  # no back-off, no retry


def test_client_error_is_not_retried(sky, tmp_path):
    sky.queue((414, "URI Too Long", 0.0))
    with pytest.raises(ServiceError, match=r"414.*batch_size"):
        _client(tmp_path, sky.url).fetch(RA, DEC)
    assert len(sky.requests) == 1


def test_plan_halves_batches_to_fit_the_url_limit(tmp_path):
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(0, 360, 23), rng.uniform(-10, 60, 23)
    client = SkyServerClient(tmp_path, SDSSConfig(batch_size=10, max_query_chars=1100))
    batches = client.plan(ra, dec)
    assert np.array_equal(np.concatenate([b.rows for b in batches]), np.arange(23))
    assert all(client.url_length(b.sql) <= 1100 for b in batches) and len(batches) > 3
    assert len({b.key for b in batches}) == len(batches)


def test_parse_rejects_bad_tables():
    header = (DATA / "no_match.csv").read_text().splitlines()[1]
    with pytest.raises(MalformedResponse, match="lacks"):
        parse_response("#Table1\nup_id,objid,ra\n0,1,2\n", 1)
    with pytest.raises(MalformedResponse, match="fields"):
        parse_response(f"#Table1\n{header}\n0,1,2\n", 1)
    with pytest.raises(MalformedResponse, match="empty"):
        parse_response("", 1)
    row = (DATA / "batch_normal.csv").read_text().splitlines()[2]
    with pytest.raises(MalformedResponse, match="outside"):
        parse_response(f"#Table1\n{header}\n{row}\n", 0)
    assert parse_response(f"#Table1\n{header}\n", 3)["objid"].size == 0


def test_build_sql_is_one_line_with_every_column():
    sql = build_sql([(1.0, 2.0)], 3.0)
    assert "\n" not in sql and "p.fracDeV_r" in sql and "s.z AS specz" in sql and "0.05000000" in sql
