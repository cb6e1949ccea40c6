"""``astrovision serve`` as users meet it: a real uvicorn process on loopback, and the page in headless Chromium.

The server is started by the test with ``python -m service.cli serve`` (default signal handling) and
stopped by its PID with SIGTERM; it must shut down gracefully. Writes during reads come from another real process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the dev extras (httpx) are not installed")
from service_data import build_service_warehouse  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


class Server:
    """A ``serve`` subprocess: its URL, PID and captured output."""

    def __init__(self, home: Path, cwd: Path, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(cwd / "server.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "--home", str(home), "serve", "--port", str(self.port), *args],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=_env(), restore_signals=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve did not answer within 90 s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.text = self.output()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import SHARED

    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    tmp = tmp_path_factory.mktemp("serve")
    wh, files = build_service_warehouse(tmp / "wh", SHARED / "data")
    cwd = tmp / "cwd"
    cwd.mkdir()
    srv = Server(wh.root, cwd)
    yield srv, wh, files, cwd
    code = srv.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -SIGTERM)
    assert code in (0, -signal.SIGTERM) and "Finished server process" in srv.text, srv.text


def test_every_endpoint_over_real_http(server):
    import pyarrow as pa

    srv, wh, files, _ = server
    ids = sorted(files)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.get("/healthz").json()["tables"] == len(wh.tables())
        assert {t["table"] for t in c.get("/tables").json()["tables"]} == set(wh.tables())
        rec = c.get(f"/galaxies/{ids[0]}").json()
        assert rec["galaxy_id"] == ids[0] and rec["predictions"][0]["classes"] == ["No ring", "Ring"]
        img = c.get(f"/galaxies/{ids[0]}/image.png")
        assert img.headers["content-type"] == "image/png" and img.content[:4] == b"\x89PNG"
        sim = c.get(f"/galaxies/{ids[0]}/similar", params={"k": 4, "where": "g_r > 0.4"}).json()
        assert len(sim["neighbours"]) == 4 and all(n["features"]["g_r"] > 0.4 for n in sim["neighbours"])
        n_red = wh.sql("SELECT count(*) AS n FROM galaxy_features WHERE g_r > 0.4")["n"][0]
        assert sim["plan"]["route"] == "exact_subset" and sim["plan"]["allowed"] == n_red  # the planner's route
        assert sim["plan"]["selectivity"] == pytest.approx(n_red / sim["plan"]["rows"])
        with open(files[ids[5]], "rb") as fh:
            up = c.post("/similar", files={"file": ("mine.png", fh, "image/png")}, data={"k": "2"}).json()
        assert up["neighbours"][0]["galaxy_id"] == ids[5] and up["neighbours"][0]["distance"] < 1e-5
        assert up["plan"]["route"] == "exact" and up["plan"]["allowed"] is None
        arrow = c.post("/sql", json={"query": "SELECT galaxy_id FROM galaxies", "format": "arrow"})
        assert pa.ipc.open_stream(arrow.content).read_all().num_rows == len(ids)
        assert "/sql" in c.get("/openapi.json").json()["paths"]
        assert c.get("/docs").status_code == 200 and 'id="grid"' in c.get("/").text


@pytest.mark.parametrize("query", [
    "COPY (SELECT * FROM galaxies) TO 'leak.parquet'",
    "SELECT * FROM read_text('/etc/hostname')",
    "ATTACH 'other.duckdb'",
    "SELECT 1; COPY galaxies TO 'leak.csv'",
    "WITH x AS (SELECT 1) INSERT INTO galaxies SELECT * FROM galaxies",
])
def test_sql_attacks_over_real_http_write_nothing(server, query):
    srv, wh, _, cwd = server
    before = wh.versions()
    r = httpx.post(f"{srv.url}/sql", json={"query": query}, timeout=30)
    assert r.status_code == 400 and set(r.json()) == {"error"} and "\n" not in r.json()["error"]
    assert wh.versions() == before
    assert sorted(p.name for p in cwd.iterdir()) == ["server.log"]


WRITER = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from warehouse import Warehouse
    wh = Warehouse.open(sys.argv[1])
    rows = wh.read("galaxies").drop_columns(["code_version", "run_id", "written_at"])
    i = rows.schema.get_field_index("ra")
    for step in range(int(sys.argv[2])):
        wh.upsert("galaxies", rows.set_column(i, "ra", pa.array([float(step)] * rows.num_rows)))
    print("wrote", sys.argv[2])
""")


def test_reads_while_another_process_writes_see_one_version_and_never_fail(server):
    srv, wh, files, cwd = server
    ids = sorted(files)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(wh.root), "25"], env=_env(), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers = 0
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        while writer.poll() is None or answers < 10:
            gid = ids[answers % len(ids)]
            sql = c.post("/sql", json={"query": "SELECT count(*) AS n, count(*) FILTER (WHERE ra = floor(ra)) "
                                                "AS written, min(ra) AS lo, max(ra) AS hi FROM galaxies"})
            assert sql.status_code == 200, sql.text
            row = sql.json()["rows"][0]
            assert row["n"] == len(ids)
            # a writer's commit sets every ra to the same whole number: one version is all or none of it
            assert row["written"] in (0, len(ids)) and (row["written"] == 0 or row["lo"] == row["hi"])
            rec = c.get(f"/galaxies/{gid}")
            sim = c.get(f"/galaxies/{gid}/similar", params={"k": 3, "where": "ra = floor(ra)"})
            assert rec.status_code == 200 and sim.status_code == 200, (rec.text, sim.text)
            # the where's cached rows follow the writer's commits: the count at the version the answer read
            same = c.post("/sql", json={"query": "SELECT count(*) AS n FROM galaxies WHERE ra = floor(ra)",
                                        "versions": sim.json()["versions"]}).json()["rows"][0]["n"]
            assert sim.json()["plan"]["allowed"] == same, (sim.json()["plan"], same)
            pinned = rec.json()["versions"]["galaxies"]
            again = c.get(f"/galaxies/{gid}", params={"version": f"galaxies:{pinned}"}).json()
            assert again["catalogue"] == rec.json()["catalogue"]  # a pinned version answers the same
            answers += 1
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert answers >= 10


def test_reads_during_a_dagster_ingest_run_see_whole_commits(server, tmp_path):
    """A real ``astrovision ingest`` (a Dagster run writing images, then galaxies) beside the server."""
    import csv

    from conftest import SHARED
    from service_data import ring_files

    srv, wh, files, cwd = server
    n = len(files)
    folder = tmp_path / "more_rings"
    folder.mkdir()
    extra = ring_files(SHARED / "data", 2 * n)[n:]
    with open(folder / "catalog.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "ra", "dec"])
        for row, path in extra:
            w.writerow([row["id"], row["ra"], row["dec"]])
            shutil.copy(path, folder / path.name)
    ingest = subprocess.Popen([sys.executable, "-m", "service.cli", "--home", str(wh.root), "ingest", "--source",
                               "folder", "--path", str(folder)], env=_env(), cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    query = ("SELECT (SELECT count(*) FROM galaxies) AS n, "
             "(SELECT count(*) FROM galaxies JOIN images USING (galaxy_id)) AS with_image")
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        def read() -> None:
            r = c.post("/sql", json={"query": query})
            assert r.status_code == 200, r.text
            row = r.json()["rows"][0]
            assert row["n"] in (n, 2 * n) and row["with_image"] == row["n"]  # a galaxies row always has its image
            seen.add(row["n"])
            assert c.get(f"/galaxies/{sorted(files)[0]}").status_code == 200

        while ingest.poll() is None:
            read()
        read()  # after the run: all of its rows
    _, err = ingest.communicate(timeout=300)
    assert ingest.returncode == 0, err
    assert 2 * n in seen


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "service.cli", "--home", str(tmp_path / "wh"), "serve",
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "needs an API token" in proc.stderr


# ------------------------------------------------------------------------------------ the page
@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.geteuid() == 0:  # installable: `make test` runs `make browser` first
            pytest.fail("chromium / chromium-driver missing: run `make browser` (apt-get install chromium chromium-driver)")
        pytest.skip("chromium is not installed and cannot be (not root): apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the dev extras (selenium) are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _images_loaded(driver) -> bool:
    return driver.execute_script(
        "return [...document.images].filter(i => i.src).every(i => i.complete && i.naturalWidth > 0)")


def _assert_only_the_error(driver) -> None:
    from selenium.webdriver.common.by import By

    assert driver.find_element(By.ID, "error").is_displayed()
    assert not driver.find_element(By.ID, "query").is_displayed()
    assert not driver.find_element(By.ID, "lookalikes").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, ".neighbour, .prediction, #features tr") == []


def test_page_search_grid_and_follow_a_neighbour(server, browser):
    from selenium.webdriver.common.by import By

    srv, wh, files, _ = server
    ids = sorted(files)
    browser.get(srv.url + "/")
    browser.find_element(By.ID, "galaxy-id").send_keys(ids[0])
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("8")
    browser.find_element(By.ID, "go").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == 8)
    assert browser.find_element(By.ID, "query-title").text == ids[0]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".probability")) == 2  # one bar per class
    assert "PHOT_NO_MATCH" in browser.find_element(By.ID, "features").text
    (stored,) = wh.read("predictions", columns=["probabilities"], where=f"galaxy_id = '{ids[0]}'")["probabilities"]
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".percent")] == [
        f"{100 * p:.1f}%" for p in stored.as_py()]  # percent with one decimal
    assert browser.title == f"AstroVision: {ids[0]}"
    _wait(browser, _images_loaded)
    links = browser.find_elements(By.CSS_SELECTOR, ".neighbour-link")
    target = links[1].text
    assert target != ids[0] and target in files
    links[1].click()
    _wait(browser, lambda d: d.find_element(By.ID, "query-title").text == target)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".neighbour-link")
          and d.find_elements(By.CSS_SELECTOR, ".neighbour-link")[0].text == target)
    assert target in browser.current_url.replace("%3A", ":")


def test_page_where_filter_and_its_error(server, browser):
    from selenium.webdriver.common.by import By

    srv, wh, files, _ = server
    browser.get(srv.url + "/?" + httpx.QueryParams({"id": sorted(files)[1], "where": "label_name = 'Ring'",
                                                    "k": "20"}).__str__())
    rings = wh.count("galaxies", "label_name = 'Ring'")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == rings)
    assert all("Ring" in e.text for e in browser.find_elements(By.CSS_SELECTOR, ".distance"))
    where = browser.find_element(By.ID, "where")
    where.clear()
    where.send_keys("nonsense_column > 1")
    browser.find_element(By.ID, "go").click()
    _wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "nonsense_column" in browser.find_element(By.ID, "error").text
    _assert_only_the_error(browser)  # the earlier galaxy and its lookalikes are gone, not left under the banner
    browser.find_element(By.ID, "galaxy-id").clear()
    browser.find_element(By.ID, "galaxy-id").send_keys("rings:no-such-galaxy")
    browser.find_element(By.ID, "where").clear()
    browser.find_element(By.ID, "go").click()
    _wait(browser, lambda d: "no-such-galaxy" in d.find_element(By.ID, "error").text)
    _assert_only_the_error(browser)
    browser.find_element(By.ID, "galaxy-id").clear()
    browser.find_element(By.ID, "galaxy-id").send_keys(sorted(files)[1])
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("5")
    browser.find_element(By.ID, "go").click()  # the next good search clears the banner
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == 5)
    assert not browser.find_element(By.ID, "error").is_displayed()


GALAXY10 = ["Disturbed", "Merging", "Round Smooth", "In-between Round Smooth", "Cigar Shaped Smooth",
            "Barred Spiral", "Unbarred Tight Spiral", "Unbarred Loose Spiral", "Edge-on without Bulge",
            "Edge-on with Bulge"]


def _matched_with_a_ten_class_model(wh, gid: str, probabilities: list[float]) -> None:
    """Give ``gid`` morphometrics in two bands, SDSS magnitudes and a prediction of a second model with
    Galaxy10's (long) class names."""
    import json

    from warehouse.schemas import rows_with_defaults as rows

    wh.upsert("morphometrics", rows("morphometrics", 2, galaxy_id=[gid] * 2, shard=["rings-00000"] * 2,
                                    band=["g", "r"], gini=[0.41, 0.55], m20=[-1.7, -2.1]))
    g_r = wh.read("photometry", columns=["g_r"], where=f"galaxy_id = '{gid}'")["g_r"].to_pylist()
    wh.upsert("photometry", rows("photometry", 1, galaxy_id=[gid], shard=["rings-00000"], source=["rings"],
                                 n_candidates=[1], sep_arcsec=[0.4], petroMag_r=[17.234], petroMagErr_r=[0.012],
                                 modelMag_r=[17.105], modelMagErr_r=[0.008], g_r=g_r, quality_ok=[True], flags=[0]))
    wh.upsert("models", rows("models", 1, name=["morphology_probe"], version=[1], kind=["probe"],
                             label_column=["label"], split_name=["label-s0"],
                             classes_json=[json.dumps([{"label": i, "name": c} for i, c in enumerate(GALAXY10)])],
                             config_json=["{}"], metrics_json=["{}"], gate_passed=[True], gate_json=["{}"],
                             excluded_classes_json=["[]"], artefact_path=[""], table_versions_json=["{}"],
                             weights_origin=["random init"]))
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    wh.upsert("predictions", rows("predictions", 1, galaxy_id=[gid], model_name=["morphology_probe"],
                                  model_version=[1], probabilities=[probabilities], predicted_label=[best],
                                  predicted_name=[GALAXY10[best]], split=["test"]))


def test_page_shows_magnitudes_whole_class_names_and_readable_probabilities(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    srv, wh, files, _ = server
    gid = sorted(files)[3]
    probabilities = [3.554e-9, 0.0004, 0.0001, 0.0002, 0.0, 0.0123, 0.9312, 0.0351, 0.00019, 0.0208]
    _matched_with_a_ten_class_model(wh, gid, probabilities)
    browser.get(srv.url + "/?" + str(httpx.QueryParams({"id": gid, "k": "8"})))
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".prediction")) == 2
          and len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == 8)
    rows = dict(browser.execute_script(
        "return [...document.querySelectorAll('#features tr')].map(tr => [...tr.cells].map(c => c.textContent))"))
    assert rows["petroMag_r"] == "17.234 ± 0.012" and rows["modelMag_r"] == "17.105 ± 0.008"
    assert (rows["morph band"], rows["gini"], rows["m20"]) == ("r", "0.5500", "-2.100")  # galaxy_features' band
    block = browser.find_elements(By.CSS_SELECTOR, ".prediction")[1]
    assert block.find_element(By.TAG_NAME, "strong").text == "morphology_probe v1: Unbarred Tight Spiral (93.1%)"
    names = block.find_elements(By.CSS_SELECTOR, ".class-name")
    assert [e.text for e in names] == GALAXY10
    for name, track in zip(names, block.find_elements(By.CSS_SELECTOR, ".track")):
        # the whole name is laid out (nothing clipped or ellipsised) and ends before its bar starts
        assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", name), name.text
        assert name.rect["x"] + name.rect["width"] <= track.rect["x"], name.text
    assert [e.text for e in block.find_elements(By.CSS_SELECTOR, ".percent")] == [
        "<0.1%", "<0.1%", "<0.1%", "<0.1%", "0%", "1.2%", "93.1%", "3.5%", "<0.1%", "2.1%"]
    assert not re.search(r"\d[eE][-+]?\d", browser.find_element(By.ID, "predictions").text)  # no 3.554e-9
    _wait(browser, _images_loaded)
    browser.save_screenshot(str(tmp_path / "page.png"))
    shots = os.environ.get("ASTROVISION_SCREENSHOTS")  # opt-in: where docs/img's pictures come from
    if shots:
        shutil.copy(tmp_path / "page.png", Path(shots) / "service-page.png")


def test_page_upload_updates_url_and_title_and_back_replays_the_search(server, browser):
    from selenium.webdriver.common.by import By

    srv, _, files, _ = server
    ids = sorted(files)
    browser.get(srv.url + "/?" + str(httpx.QueryParams({"id": ids[0], "k": "3"})))
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour-link")) == 3)
    upload = files[ids[5]]
    browser.find_element(By.ID, "file").send_keys(str(upload))

    def shows_the_upload(d) -> bool:
        links = d.find_elements(By.CSS_SELECTOR, ".neighbour-link")
        return d.find_element(By.ID, "query-title").text == f"uploaded: {upload.name}" and bool(links) \
            and links[0].text == ids[5]

    _wait(browser, shows_the_upload)
    assert httpx.URL(browser.current_url).params["upload"] == upload.name
    assert browser.title == f"AstroVision: uploaded {upload.name}"
    browser.back()  # the search before the upload, not an older one
    _wait(browser, lambda d: d.find_element(By.ID, "query-title").text == ids[0]
          and len(d.find_elements(By.CSS_SELECTOR, ".neighbour-link")) == 3)
    assert httpx.URL(browser.current_url).params["id"] == ids[0] and browser.title == f"AstroVision: {ids[0]}"
    browser.forward()  # the upload again, from the file this page kept
    _wait(browser, shows_the_upload)
    assert browser.title == f"AstroVision: uploaded {upload.name}"
    browser.refresh()  # a reloaded page no longer has the file: it says so, and shows nothing stale
    _wait(browser, lambda d: "drop it again" in d.find_element(By.ID, "error").text)
    _assert_only_the_error(browser)


def test_page_on_a_token_server_asks_for_the_token_once(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    _, wh, files, _ = server
    ids = sorted(files)
    secret = "page-test-token-5a1f"
    (tmp_path / "token").write_text(secret + "\n")
    protected = Server(wh.root, tmp_path, "--token-file", str(tmp_path / "token"))
    # count the page's prompts (the real prompt still opens: the test answers it as a person would)
    counter = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "const real = window.prompt; window.prompts = 0;"
        "window.prompt = (...a) => { window.prompts += 1; return real.apply(window, a); };")})
    try:
        browser.get(protected.url + "/?" + str(httpx.QueryParams({"id": ids[0], "k": "3"})))
        _wait(browser, expected_conditions.alert_is_present())
        alert = browser.switch_to.alert
        alert.send_keys(secret)
        alert.accept()
        # a second prompt would be open here: every find_elements below would raise UnexpectedAlertPresent
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == 3
              and d.find_element(By.ID, "query-title").text == ids[0])
        _wait(browser, _images_loaded)  # images are fetched with the token too
        assert browser.execute_script("return window.prompts") == 1
        assert not browser.find_element(By.ID, "error").is_displayed()
        browser.refresh()  # the token is kept for the tab: not asked again
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".neighbour")) == 3)
        assert browser.execute_script("return window.prompts") == 0
        assert browser.execute_script("return sessionStorage.getItem('astrovision-token')") == secret
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", counter)
        protected.stop()
