"""SDSS DR17 photometry for a list of positions, through ``astroquery.sdss`` (SkyServer SQL).

Why SkyServer SQL and not CDS XMatch
------------------------------------
Two services can cross-match many positions against SDSS:

* **SkyServer SQL** (``astroquery.sdss.SDSS.query_sql_async``, the default here): one SQL statement per
  batch of positions, ``dbo.fGetNearbyObjEq`` around each (the HTM-indexed neighbour search of the
  SkyServer schema, Szalay et al. 2007, MSR-TR-2007-04) joined to the ``PhotoObj`` view (primary
  detections only) and ``SpecObj`` (science-primary spectra). It returns *every* canonical column
  (type, clean, model and Petrosian magnitudes with errors, Galactic extinction, Petrosian radii,
  fracDeV, spectroscopic redshift) from DR17 itself, and every object inside the radius, so multiple
  candidates can be counted. Weak points: the SQL travels in a GET query string, so a batch is
  bounded by URL length (:attr:`SDSSConfig.max_query_chars`, batches are halved until they fit);
  SkyServer has outages, and it reports SQL errors as a 200 response with an error page, which
  :func:`parse_response` treats as malformed.
* **CDS XMatch** (``astroquery.xmatch.XMatch.query`` against ``vizier:V/154/sdss16``): a POSTed
  table of positions, large uploads, clean HTTP status codes and a very stable service, so it is the
  more robust transport. But the VizieR copy of SDSS (DR16; photometry identical to DR17) lacks the
  Galactic extinction, Petrosian radii and fracDeV columns, so colours could not be
  extinction-corrected from it alone.

Completeness of the columns decided the default; robustness is bought back on the client side:
batching, a polite request rate, retries with exponential back-off on timeouts, connection drops,
HTTP 429 and 5xx, an on-disk cache of raw responses keyed by batch (an interrupted run resumes
without asking again), and a fast, explicit failure when offline.

The retry loop is the client's own, not ``urllib3.Retry`` mounted on astroquery's session: each attempt
is counted in the :class:`FetchReport` (requests, retries, back-off and HTTP time, which the asset
metadata and ``photometry plan`` show), the first connection error before any answer means "offline"
and stops at once, and the clock and sleep are injectable for the tests; ``Retry`` would retry inside
``requests``, out of sight of all three.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from features.errors import InputError, OfflineError
from features.photometry.columns import CANONICAL, SENTINEL_BELOW, canonical_name

__all__ = [
    "Batch",
    "Candidates",
    "FetchReport",
    "MalformedResponse",
    "SDSSConfig",
    "ServiceError",
    "SkyServerClient",
    "build_sql",
    "parse_response",
]

log = logging.getLogger(__name__)

SQL_VERSION = 1
"""Bumped whenever :func:`build_sql` changes what a response means (it is part of the cache key)."""

_PHOTO_COLUMNS = [c for c in CANONICAL if c != "specz"]


class ServiceError(InputError):
    """The service refused a request in a way retrying cannot fix (HTTP 4xx other than 429)."""


class MalformedResponse(ValueError):
    """A 200 response that is not the CSV table asked for (an error page, truncated text, bad rows)."""


@dataclass(frozen=True)
class SDSSConfig:
    """How to talk to SkyServer.

    Attributes
    ----------
    data_release : int
        SDSS data release (17).
    batch_size : int
        Positions per request (at most; halved further until the query fits ``max_query_chars``).
    search_radius_arcsec : float
        Radius of the server-side search. Objects beyond the match radius but inside this one are
        kept as *far* matches (flagged, not trusted); keep it at least the match radius.
    min_interval_s : float
        Minimum time between the starts of two requests (a polite rate: 1 request/s by default).
    max_retries : int
        Retries of one batch after a timeout, connection drop, HTTP 429 or 5xx.
    backoff_base_s, backoff_max_s : float
        Back-off before retry ``k`` (0-based) is ``min(backoff_max_s, backoff_base_s * 2**k)``, or the
        server's ``Retry-After`` when it sends a larger one.
    connect_timeout_s, read_timeout_s : float
        Connection and read time limits of one request. The short connect limit is what makes the
        offline case fail within seconds.
    max_consecutive_failures : int
        After this many batches in a row fail (retries exhausted or malformed), stop: the service is
        down. Cached batches stay, so the next run resumes.
    max_query_chars : int
        Longest GET URL sent. SkyServer runs behind IIS, whose default query-string limit is 2048
        bytes; 25 positions make a URL of about 1,850 characters.
    base_url : str
        SkyServer base URL; empty means ``astroquery.sdss.conf.skyserver_baseurl``
        (https://skyserver.sdss.org). Tests point it at a local server.
    """

    data_release: int = 17
    batch_size: int = 25
    search_radius_arcsec: float = 3.0
    min_interval_s: float = 1.0
    max_retries: int = 4
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_consecutive_failures: int = 3
    max_query_chars: int = 2000
    base_url: str = ""

    @property
    def service_name(self) -> str:
        """The ``source`` written with every row (``sdss_dr17``)."""
        return f"sdss_dr{self.data_release}"


@dataclass
class FetchReport:
    """The client's own accounting of one :meth:`SkyServerClient.fetch` call.

    ``http_s`` is time spent inside requests, ``wait_s`` sleeping for the rate limit and
    ``backoff_s`` sleeping before retries; ``wall_s`` is the whole call.
    """

    n_positions: int = 0
    n_batches: int = 0
    n_cached: int = 0
    n_stored: int = 0
    n_requests: int = 0
    n_retries: int = 0
    n_failed_batches: int = 0
    n_candidates: int = 0
    http_s: float = 0.0
    wait_s: float = 0.0
    backoff_s: float = 0.0
    wall_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Plain values for asset metadata and benchmark tables."""
        out = asdict(self)
        out["failures"] = self.failures[:5]
        return out


@dataclass(frozen=True)
class Batch:
    """One request: which positions (rows of the caller's arrays), its SQL and its cache key."""

    index: int
    rows: np.ndarray
    sql: str
    key: str


@dataclass
class Candidates:
    """Every SDSS primary object found near the positions, one row per (position, object) pair.

    Attributes
    ----------
    gal_idx : numpy.ndarray of int64
        Row of the position (in the arrays given to :meth:`SkyServerClient.fetch`) each candidate
        belongs to.
    columns : dict of str to numpy.ndarray
        Canonical columns of the candidates (``objid`` int64, the rest float64 with NaN).
    failed : numpy.ndarray of bool
        Positions whose batch could not be fetched (their values are unknown, not absent).
    """

    gal_idx: np.ndarray
    columns: dict[str, np.ndarray]
    failed: np.ndarray


def build_sql(positions: Sequence[tuple[float, float]], search_radius_arcsec: float) -> str:
    """The SkyServer SQL for one batch: all primary objects within the radius of each position.

    ``up_id`` is the position's index within the batch; ``sep_arcsec`` the server's distance;
    ``specz`` the redshift of the object's science-primary spectrum (NULL where none).
    Coordinates are written with 6 decimals (3.6 mas, far below any match radius).
    """
    values = ",".join(f"({i},{ra:.6f},{dec:.6f})" for i, (ra, dec) in enumerate(positions))
    cols = ",".join(f"p.{c}" for c in _PHOTO_COLUMNS)
    r_arcmin = search_radius_arcsec / 60.0
    return (
        f"SELECT t.i AS up_id,n.distance*60 AS sep_arcsec,{cols},s.z AS specz "
        f"FROM (VALUES {values}) AS t(i,ra,dec) "
        f"CROSS APPLY dbo.fGetNearbyObjEq(t.ra,t.dec,{r_arcmin:.8f}) AS n "
        "JOIN PhotoObj AS p ON p.objID=n.objID "
        "LEFT JOIN SpecObj AS s ON s.bestObjID=p.objID "
        "ORDER BY t.i,n.distance"
    )


def _number(text: str) -> float:
    t = text.strip()
    if t == "" or t.lower() in ("null", "nan", "none"):
        return np.nan
    return float(t)


def parse_response(text: str, n_positions: int) -> dict[str, np.ndarray]:
    """Parse SkyServer's CSV answer (``#Table1`` line, a header, then rows).

    Returns
    -------
    dict
        ``up_id`` (int64) and every canonical column; SDSS sentinels (<= -1000) become NaN. A pair
        (position, object) listed twice (an object with two science-primary spectra) keeps its first row.

    Raises
    ------
    MalformedResponse
        An error page (HTML, or SkyServer's ``error_message``), an empty body, a header without the
        requested columns, a row with the wrong number of fields or a non-numeric value, or an
        ``up_id`` outside the batch.
    """
    head = text.lstrip()[:300]
    if not head:
        raise MalformedResponse("empty response body")
    if head.startswith("<") or "error_message" in text.lower():
        raise MalformedResponse(f"service returned an error page: {head[:160]!r}")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    names = ["up_id", "sep_arcsec", *CANONICAL]
    if not lines:
        if text.lstrip().startswith("#Table"):
            lines = []
        else:
            raise MalformedResponse(f"no CSV table in response: {head[:160]!r}")
    out: dict[str, list[float]] = {n: [] for n in names}
    if not lines:
        return _to_arrays(out)
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = next(reader)
    position: dict[str, int] = {}
    for j, raw in enumerate(header):
        key = raw.strip()
        name = key.lower() if key.lower() in ("up_id", "sep_arcsec") else canonical_name(key)
        if name is not None:
            position[name] = j
    lacking = [n for n in names if n not in position]
    if lacking:
        raise MalformedResponse(f"response header lacks column(s) {lacking}: {header[:6]}...")
    seen: set[tuple[int, int]] = set()
    for k, row in enumerate(reader, start=1):
        if len(row) != len(header):
            raise MalformedResponse(f"row {k} has {len(row)} fields, the header has {len(header)}")
        try:
            up = int(row[position["up_id"]])
            objid = int(row[position["objid"]])
            values = {n: _number(row[position[n]]) for n in names if n not in ("up_id", "objid")}
        except ValueError as exc:
            raise MalformedResponse(f"row {k}: {exc}") from None
        if not 0 <= up < n_positions:
            raise MalformedResponse(f"row {k}: up_id {up} outside the batch of {n_positions}")
        if (up, objid) in seen:
            continue
        seen.add((up, objid))
        out["up_id"].append(up)
        out["objid"].append(objid)
        for n, v in values.items():
            out[n].append(v)
    return _to_arrays(out)


def _to_arrays(cols: dict[str, list[float]]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if name in ("up_id", "objid"):
            arrays[name] = np.asarray(values, dtype=np.int64)
        else:
            a = np.asarray(values, dtype=np.float64)
            if name not in ("ra", "dec", "sep_arcsec"):
                a[a <= SENTINEL_BELOW] = np.nan
            arrays[name] = a
    return arrays


class SkyServerClient:
    """Batched, rate-limited, retrying, caching SkyServer cross-match client.

    Parameters
    ----------
    cache_dir : path
        Raw responses are stored as ``<cache_dir>/dr<N>/<key>.csv``; ``key`` hashes the SQL version,
        release, search radius and the batch's positions, so a rerun over the same galaxies reads
        them back without a request.
    config : SDSSConfig
    sleep, clock : callables
        Injected for tests (default :func:`time.sleep`, :func:`time.monotonic`).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        config: SDSSConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from astroquery.sdss import SDSSClass

        self.config = config or SDSSConfig()
        self.cache_dir = Path(cache_dir) / f"dr{self.config.data_release}"
        self._sdss = SDSSClass()
        self._sleep = sleep
        self._clock = clock
        self._last_start: float | None = None
        self._connected = False

    # ------------------------------------------------------------------------------------ planning
    @property
    def base_url(self) -> str:
        from astroquery.sdss import conf

        return (self.config.base_url or conf.skyserver_baseurl).rstrip("/")

    def query_url(self) -> str:
        """The SQL search endpoint of the configured release."""
        return f"{self.base_url}/dr{self.config.data_release}/en/tools/search/x_results.aspx"

    def url_length(self, sql: str) -> int:
        """Length of the GET URL that carries ``sql`` (astroquery's own payload, URL-encoded)."""
        import requests

        payload = self._sdss.query_sql_async(sql, data_release=self.config.data_release, get_query_payload=True)
        return len(requests.Request("GET", self.query_url(), params=payload).prepare().url)

    def cache_key(self, positions: Sequence[tuple[float, float]]) -> str:
        """Hash of what a batch asks: SQL version, release, radius and rounded positions."""
        spec = {
            "sql_version": SQL_VERSION,
            "dr": self.config.data_release,
            "radius": round(self.config.search_radius_arcsec, 6),
            "positions": [[round(float(r), 6), round(float(d), 6)] for r, d in positions],
        }
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()

    def cache_path(self, batch: Batch) -> Path:
        """Where the raw response of ``batch`` is (or will be) stored."""
        return self.cache_dir / f"{batch.key}.csv"

    def plan(self, ra: np.ndarray, dec: np.ndarray) -> list[Batch]:
        """Cut the positions into batches, in order, each fitting ``max_query_chars``.

        Positions without finite coordinates are left out of every batch (they get no candidates).
        """
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        rows = np.flatnonzero(np.isfinite(ra) & np.isfinite(dec))
        size = max(1, int(self.config.batch_size))
        chunks = [rows[i : i + size] for i in range(0, rows.size, size)]
        batches: list[Batch] = []
        while chunks:
            chunk = chunks.pop(0)
            positions = list(zip(ra[chunk].tolist(), dec[chunk].tolist()))
            sql = build_sql(positions, self.config.search_radius_arcsec)
            if chunk.size > 1 and self.url_length(sql) > self.config.max_query_chars:
                half = chunk.size // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
                continue
            batches.append(Batch(index=len(batches), rows=chunk, sql=sql, key=self.cache_key(positions)))
        return batches

    def estimate(self, ra: np.ndarray, dec: np.ndarray, latency_s: float = 0.0) -> dict[str, float]:
        """What a :meth:`fetch` of these positions would cost, without a request.

        Parameters
        ----------
        latency_s : float
            Assumed server time per request; the time estimate is
            ``n_to_request * max(min_interval_s, latency_s)`` (a lower bound: retries come on top).

        Returns
        -------
        dict
            ``n_positions``, ``n_batches``, ``n_cached``, ``n_to_request``, ``positions_per_batch``
            (mean), ``max_url_chars`` and ``est_seconds``.
        """
        batches = self.plan(ra, dec)
        cached = sum(self.cache_path(b).is_file() for b in batches)
        todo = len(batches) - cached
        return {
            "n_positions": int(np.asarray(ra).size),
            "n_batches": len(batches),
            "n_cached": int(cached),
            "n_to_request": int(todo),
            "positions_per_batch": float(np.mean([b.rows.size for b in batches])) if batches else 0.0,
            "max_url_chars": max((self.url_length(b.sql) for b in batches), default=0),
            "est_seconds": float(todo * max(self.config.min_interval_s, latency_s)),
        }

    # ------------------------------------------------------------------------------------ fetching
    def _throttle(self, report: FetchReport) -> None:
        if self._last_start is not None:
            wait = self.config.min_interval_s - (self._clock() - self._last_start)
            if wait > 0:
                self._sleep(wait)
                report.wait_s += wait
        self._last_start = self._clock()

    def _offline_message(self, what: str, report: FetchReport) -> str:
        return (
            f"SDSS SkyServer at {self.base_url} {what}; of {report.n_batches} batch(es), {report.n_cached} came "
            f"from and {report.n_stored} were stored in the cache {self.cache_dir}. Rerun when the service is reachable (cached "
            "batches are not asked again), or cross-match against a catalogue file instead: "
            "the photometry asset's `catalog` config, `photometry_catalog` in the source's params_json, or "
            "`astrovision photometry --catalog FILE`."
        )

    def _get(self, sql: str) -> object:
        from astroquery.sdss import conf

        with conf.set_temp("skyserver_baseurl", self.base_url):
            return self._sdss.query_sql_async(
                sql,
                data_release=self.config.data_release,
                timeout=(self.config.connect_timeout_s, self.config.read_timeout_s),
                cache=False,
            )

    def _fetch_batch(self, batch: Batch, report: FetchReport) -> str | None:
        """Raw text of a batch's answer (after retries), or ``None`` when the batch failed."""
        import requests

        cfg = self.config
        for attempt in range(cfg.max_retries + 1):
            self._throttle(report)
            t0 = self._clock()
            retry_after = 0.0
            try:
                response = self._get(batch.sql)
            except requests.exceptions.ConnectionError as exc:
                report.n_requests += 1
                report.http_s += self._clock() - t0
                if not self._connected:
                    raise OfflineError(self._offline_message(f"is unreachable ({type(exc).__name__})", report)) from exc
                error = f"connection error ({type(exc).__name__})"
            except requests.exceptions.Timeout:
                report.n_requests += 1
                report.http_s += self._clock() - t0
                error = f"no answer within {cfg.read_timeout_s:g} s"
            else:
                report.n_requests += 1
                report.http_s += self._clock() - t0
                self._connected = True
                status = int(response.status_code)
                if status == 429 or status >= 500:
                    error = f"HTTP {status}"
                    try:
                        retry_after = float(response.headers.get("Retry-After", 0) or 0)
                    except ValueError:
                        retry_after = 0.0
                elif status >= 400:
                    hint = (
                        " (IIS answers 404/414 to a query string that is too long: lower batch_size or max_query_chars)"
                        if status in (400, 404, 414) else ""
                    )
                    raise ServiceError(
                        f"SDSS SkyServer refused batch {batch.index} with HTTP {status}{hint}: {response.text[:200]!r}"
                    )
                else:
                    text = response.text
                    try:
                        parse_response(text, batch.rows.size)
                    except MalformedResponse as exc:
                        report.failures.append(f"batch {batch.index}: malformed response: {exc}")
                        log.warning("SDSS batch %d: malformed response (%s); not cached", batch.index, exc)
                        return None
                    self._store(batch, text)
                    report.n_stored += 1
                    return text
            if attempt < cfg.max_retries:
                delay = max(retry_after, min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt))
                log.info("SDSS batch %d: %s; retry %d in %.1f s", batch.index, error, attempt + 1, delay)
                self._sleep(delay)
                report.backoff_s += delay
                report.n_retries += 1
        report.failures.append(f"batch {batch.index}: {error} after {cfg.max_retries + 1} attempt(s)")
        return None

    def _store(self, batch: Batch, text: str) -> None:
        path = self.cache_path(batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def fetch(self, ra: np.ndarray, dec: np.ndarray) -> tuple[Candidates, FetchReport]:
        """All SDSS primary objects within the search radius of each position.

        Cached batches are read from disk; the others are requested. A batch that still fails after
        its retries (or answers malformed text) marks its positions ``failed`` and is not cached, so
        the next run asks again.

        Raises
        ------
        OfflineError
            The service cannot be reached at all (the first request cannot connect), or
            ``max_consecutive_failures`` batches failed in a row. The message names the cache
            directory and the catalogue-file alternative.
        ServiceError
            The service refused a request with HTTP 4xx (not 429).
        """
        t_start = self._clock()
        ra, dec = np.asarray(ra, float), np.asarray(dec, float)
        batches = self.plan(ra, dec)
        report = FetchReport(n_positions=int(ra.size), n_batches=len(batches))
        failed = np.zeros(ra.size, bool)
        parts: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
        consecutive = 0
        for batch in batches:
            path = self.cache_path(batch)
            text: str | None = None
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                try:
                    parse_response(text, batch.rows.size)
                    report.n_cached += 1
                except MalformedResponse as exc:
                    log.warning("cached SDSS response %s is unreadable (%s); asking again", path, exc)
                    path.unlink(missing_ok=True)
                    text = None
            if text is None:
                text = self._fetch_batch(batch, report)
            if text is None:
                failed[batch.rows] = True
                report.n_failed_batches += 1
                consecutive += 1
                if consecutive >= self.config.max_consecutive_failures:
                    report.wall_s = self._clock() - t_start
                    raise OfflineError(
                        self._offline_message(
                            f"failed {consecutive} batch(es) in a row (last: {report.failures[-1]})", report
                        )
                    )
                continue
            consecutive = 0
            parsed = parse_response(text, batch.rows.size)
            parts.append((batch.rows[parsed.pop("up_id")], parsed))
        gal_idx = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        columns = {
            name: (np.concatenate([p[1][name] for p in parts]) if parts else
                   np.zeros(0, np.int64 if name == "objid" else np.float64))
            for name in CANONICAL
        }
        report.n_candidates = int(gal_idx.size)
        report.wall_s = self._clock() - t_start
        return Candidates(gal_idx=gal_idx.astype(np.int64), columns=columns, failed=failed), report
