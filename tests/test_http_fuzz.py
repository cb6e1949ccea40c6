"""Fuzz the HTTP surface from its own OpenAPI schema (schemathesis): no request makes a 500.

A real ``astrovision serve`` on loopback (nothing else is contacted), a small warehouse of real
galaxies, and a bounded run: a fixed number of examples per operation, derandomized (the same
requests every run), with no deadline per example but a wall-clock budget for the whole module.
"""

from __future__ import annotations

import time

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the dev extras (schemathesis) are not installed")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from service_data import build_service_warehouse  # noqa: E402
from test_http_server import Server  # noqa: E402

EXAMPLES = 25
"""Examples per operation and generation mode (valid, invalid)."""
BUDGET_S = 300
"""Wall-clock bound of the whole fuzz run; past it, the remaining operations are skipped, not failed."""


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    from conftest import SHARED

    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is not available")
    tmp = tmp_path_factory.mktemp("fuzz")
    wh, _ = build_service_warehouse(tmp / "wh", SHARED / "data", n=6)
    cwd = tmp / "cwd"
    cwd.mkdir()
    srv = Server(wh.root, cwd, "--sql-timeout", "2", "--sql-memory-limit", "512MB", "--max-upload-mb", "1")
    srv.started = time.monotonic()
    yield srv
    srv.stop()


def _fuzzer(operation, mode, url: str, seen: dict[str, set[int]]):
    """A seeded, bounded Hypothesis test sending ``operation``'s generated requests to ``url``."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case) -> None:
        response = case.call(base_url=url, timeout=30)
        seen.setdefault(operation.label, set()).add(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:300])
        ctype = response.headers.get("content-type") or ""
        ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps a header's values in a list
        if ctype.startswith("application/x-votable+xml"):  # /vo/: DAL errors (SCS/SIA INFO Error, TAP ERROR status)
            assert response.status_code == 200 or b'name="Error"' in response.content \
                or b'value="ERROR"' in response.content, response.text[:300]
        elif response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and "\n" not in body["error"], body

    return fuzz


def test_no_request_makes_a_500(fuzz_server):
    """Each operation of ``/openapi.json``: valid and invalid requests (schemathesis' positive and negative
    generation), every 4xx a one-line JSON error, never a 5xx."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    seen: dict[str, set[int]] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if time.monotonic() - fuzz_server.started > BUDGET_S:
                pytest.skip(f"the fuzz budget of {BUDGET_S} s is spent after {len(seen)} operations")
            try:
                _fuzzer(operation, mode, fuzz_server.url, seen)()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
                assert mode == GenerationMode.NEGATIVE
    assert len(seen) == len(operations)
    assert any(code == 200 for codes in seen.values() for code in codes)  # not only refusals
    assert "Exception in ASGI application" not in fuzz_server.output()
