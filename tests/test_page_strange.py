"""The page's strange-galaxies view in headless Chromium: label with the buttons, re-rank, the order changes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the dev extras (httpx) are not installed")
from test_http_server import Server, _wait, browser  # noqa: F401 (browser is a fixture)
from toy_warehouse import fill_toy_warehouse

from features.anomaly import AnomalyParams
from stages.anomaly import score_anomalies


@pytest.fixture
def strange_server(tmp_path, warehouse):
    gal, y = fill_toy_warehouse(warehouse, n=60, size=32, seed=5, separation=0.6)
    score_anomalies(warehouse, params=AnomalyParams(n_components=8, n_estimators=50))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    srv = Server(warehouse.root, cwd)
    yield srv, warehouse, dict(zip(gal["galaxy_id"], np.asarray(y).tolist(), strict=True))
    srv.stop()


def _order(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [c.get_attribute("data-galaxy-id") for c in driver.find_elements(By.CSS_SELECTOR, ".strange-card")]


def test_label_rerank_and_the_order_changes(strange_server, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    srv, wh, classes = strange_server
    browser.get(srv.url + "/?view=strange&label=merger")
    _wait(browser, lambda d: len(_order(d)) == 24)
    assert "by anomaly score" in browser.find_element(By.ID, "strange-note").text
    before = _order(browser)
    wanted = max(set(classes.values()), key=list(classes.values()).count)
    yes = [g for g in before if classes[g] == wanted][:3]
    no = [g for g in before if classes[g] != wanted][:4]
    for g, button in [*((g, "label-yes") for g in yes), *((g, "label-no") for g in no)]:
        card = browser.find_element(By.CSS_SELECTOR, f'.strange-card[data-galaxy-id="{g}"]')
        card.find_element(By.CSS_SELECTOR, "." + button).click()
        _wait(browser, lambda d, c=card: c.get_attribute("data-labelled"))
    stored = wh.read("labels", columns=["galaxy_id", "name", "value", "source"]).to_pylist()
    assert sorted((r["galaxy_id"], r["value"]) for r in stored) == sorted(
        [(g, 1.0) for g in yes] + [(g, 0.0) for g in no])
    assert {r["name"] for r in stored} == {"merger"} and {r["source"] for r in stored} == {"page"}
    browser.find_element(By.ID, "rerank").click()
    _wait(browser, lambda d: "ranked from 7 labels" in d.find_element(By.ID, "strange-note").text)
    after = _order(browser)
    assert len(after) == 24 and after != before and not set(after) & set(yes + no)
    share_before = np.mean([classes[g] == wanted for g in before[:10]])
    share_after = np.mean([classes[g] == wanted for g in after[:10]])
    assert share_after >= share_before
    # the lookalike grid gains the same buttons
    browser.get(srv.url + "/?" + f"id={yes[0]}&k=6")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid .label-no")) == 6)
    card = browser.find_elements(By.CSS_SELECTOR, "#grid .neighbour")[1]
    card.find_element(By.CSS_SELECTOR, ".label-no").click()
    _wait(browser, lambda d: card.get_attribute("data-labelled"))
    assert wh.count("labels") == len(yes) + len(no) + 1
