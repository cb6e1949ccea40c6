"""The FastAPI app: JSON API over the warehouse, the web page, and one error shape.

Every request reads one snapshot (:class:`warehouse.Snapshot`) of the server's one
:class:`warehouse.ReadSession`, opened in the app's lifespan and handed to the routes through
``Depends``: the table versions current when it starts (looked up at most every
``ReadSession.refresh_s``), or those it names with ``?version=table:N`` (time travel; the ``versions`` of
a ``POST /sql`` body too), from the session's small cache of snapshots. The session owns every cache
(opened datasets, DuckDB engines, id -> row maps, vector matrices, ``where`` positions), so a request
sets nothing up. Answers say which versions they read, so a notebook can pin
them and get the same answer again while Dagster runs write.

Bad input is a 4xx whose body is :class:`service.http.models.ErrorResponse` (one line, no absolute
path: the warehouse root, the working and temporary directories are cut out); the SQL surface is the
CLI's (:class:`warehouse.sql_engine.SQLEngine`, the session's: one read-only statement, no file access, a row cap, a
byte cap, a memory limit and a timeout, :attr:`Settings.sql_limits`). The token and the body size are
checked before the body is read (:class:`service.http.guard.RequestGuard`). ``/docs`` and ``/redoc``
load their assets from the app itself (``fastapi_offline``), so they work without a network.
"""

import io
import json
import logging
import math
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from features.errors import InputError
from service.http.guard import RequestGuard
from service.http.labels import labels_router
from service.http.models import (
    ErrorResponse,
    GalaxyRecord,
    HealthResponse,
    Neighbour,
    Prediction,
    SearchPlanModel,
    SimilarResponse,
    SQLRequest,
    SQLResponse,
    TableInfo,
    TablesResponse,
)
from service.http.settings import Settings
from service.http.uploads import read_upload
from service.http.vo import vo_router
from warehouse import ReadSession, Snapshot, Warehouse, WarehouseError
from warehouse.provenance import code_version

__all__ = ["create_app", "parse_versions"]

log = logging.getLogger(__name__)

_STATIC = resources.files("service.http") / "static"
_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422)}
_PREDICTION_FIELDS = set(Prediction.model_fields) - {"extra"}
_BODY_SLACK = 65536
"""Bytes a request body may hold beyond ``max_upload_bytes`` (multipart headers and form fields)."""
_ABSOLUTE = re.compile(r"(?<![\w:/.])(?:/[\w.+@=-]+){2,}/?")
"""An absolute POSIX path of two or more parts (what is left of one after the known roots are cut)."""


def _one_line(text: Any) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:500] if lines else "bad request"


def _without_paths(text: str, roots: dict[str, str]) -> str:
    """``text`` with no absolute path: a path under one of ``roots`` becomes relative to it, a root itself
    becomes its name in ``roots`` (``"the warehouse"``), any other absolute path its last part."""
    for path, name in sorted(roots.items(), key=lambda kv: -len(kv[0])):
        if path and path != "/":
            text = text.replace(path + "/", "").replace(path, name)
    return _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def _error(status: int, message: Any, headers: dict[str, str] | None = None,
           roots: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": _without_paths(_one_line(message), roots or {})}, status_code=status,
                        headers=headers)


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN and infinities as null (stored NaN means "not measured"), bytes as their length,
    decimals as numbers (integers when whole), dates and times as ISO 8601 text, durations in seconds."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _json_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as :func:`_clean` makes them, a whole column of a plain type at once."""
    kind = column.type
    values = column.to_pylist()
    if pa.types.is_floating(kind):
        return [v if v is None or math.isfinite(v) else None for v in values]
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
            or pa.types.is_boolean(kind) or pa.types.is_null(kind)):
        return values  # what _clean leaves as it is
    return [_clean(v) for v in values]


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows of a query result as JSON-safe records; a column Python cannot hold is an ``InputError`` naming it."""
    columns = {}
    for field, column in zip(table.schema, table.columns):
        try:
            columns[field.name] = _json_values(column)
        except (ValueError, OverflowError, TypeError, NotImplementedError, pa.ArrowException) as exc:
            raise InputError(f'column "{field.name}" ({field.type}) cannot be sent as JSON ({_one_line(exc)}); '
                             "cast it to VARCHAR or ask for format arrow") from None
    names = list(columns)
    return [dict(zip(names, row)) for row in zip(*columns.values())] if names else [{} for _ in range(table.num_rows)]


def _json(answer: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """A response model's JSON, encoded once by pydantic (the route's ``response_model`` still documents it).

    Returning the bytes skips FastAPI's second validation of the model and its ``json.dumps``: both
    per request, both as long as the search itself on a warm session.
    """
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)


def _parquet(table: pa.Table) -> bytes:
    """``table`` as Parquet bytes; a column Parquet cannot hold is an ``InputError`` naming it."""
    import pyarrow.parquet as pq

    for field in table.schema:
        try:
            pq.ParquetWriter(io.BytesIO(), pa.schema([field])).close()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f'column "{field.name}" ({field.type}) cannot be written as Parquet ({_one_line(exc)}); '
                             "cast it to VARCHAR or ask for format arrow") from None
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _truth_mask(wh: Warehouse, galaxy_id: str) -> np.ndarray:
    """The demo truth's boolean galaxy mask (HTTP 404 when the galaxy has none)."""
    from warehouse.images import decode_image

    rows = wh.take("truth", [galaxy_id], columns=["mask_png"]).to_pylist() if wh.has_ids("truth", [galaxy_id]) else []
    if not rows:
        raise HTTPException(404, f"no true mask for {galaxy_id!r} (only demo galaxies have one)")
    return np.squeeze(decode_image("png", rows[0]["mask_png"])) > 0


def _outlined(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``rgb`` with the edge pixels of ``mask`` (the mask minus its binary erosion) painted green."""
    from scipy.ndimage import binary_erosion

    if mask.shape != rgb.shape[:2]:
        raise InputError(f"mask is {mask.shape[1]} x {mask.shape[0]} px, the image {rgb.shape[1]} x {rgb.shape[0]}")
    out = np.array(rgb[..., :3] if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2), dtype=np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    out[mask & ~binary_erosion(mask)] = (0, 255, 0)
    return out


def parse_versions(pairs: list[str]) -> dict[str, int]:
    """``["galaxies:3", "photometry:7"]`` -> ``{"galaxies": 3, "photometry": 7}`` (``InputError`` otherwise)."""
    out: dict[str, int] = {}
    for pair in pairs:
        table, sep, number = pair.rpartition(":")
        if not sep or not table or not number.isdigit():
            raise InputError(f"version must be TABLE:N (e.g. galaxies:3), got {pair!r}")
        out[table] = int(number)
    return out


def create_app(settings: Settings) -> FastAPI:
    """The service for the warehouse at ``settings.home`` (opened once; each request pins a snapshot)."""
    base = Warehouse.open(settings.home)
    roots = {str(base.root): "the warehouse", os.getcwd(): ".", tempfile.gettempdir(): "<tmp>",
             os.path.expanduser("~"): "~"}

    def open_session() -> ReadSession:
        # a server holds the galaxy_features rows (1M galaxies: ~0.5 GiB) within half the row-map bytes, and
        # each table's record columns (1M photometry rows: ~0.4 GiB) within a quarter
        return ReadSession(base, limits=settings.sql_limits, hold_features=True, rowmap_bytes=settings.row_map_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        app.state.read_session = open_session()  # one per server: every cache of the read path
        # one BLAS thread per request: a query's matrix-vector product is small, and waking OpenBLAS's
        # workers on a busy 2-core machine cost 5x the product itself; requests in flight use the cores
        blas = threadpool_limits(limits=1, user_api="blas")
        yield
        blas.restore_original_limits()
        app.state.read_session = None

    app = FastAPIOffline(
        title="AstroVision",
        version=code_version(),
        description="Galaxy records, lookalikes and read-only SQL over an AstroVision warehouse.",
        responses=_ERRORS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.read_session = None

    # ------------------------------------------------------------------------------------ errors
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return _error(422, f"{where}: {first.get('msg', 'invalid')}", roots=roots)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None), roots)

    @app.exception_handler(InputError)
    @app.exception_handler(WarehouseError)  # SQLError included
    async def _user(request: Request, exc: Exception) -> JSONResponse:
        return _error(400, exc, roots=roots)

    @app.exception_handler(FileNotFoundError)
    async def _missing(request: Request, exc: FileNotFoundError) -> JSONResponse:
        return _error(404, exc, roots=roots)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    app.add_middleware(RequestGuard, token=settings.token, max_body_bytes=settings.max_upload_bytes + _BODY_SLACK)

    # ------------------------------------------------------------------------------------ dependencies
    VersionQuery = Annotated[list[str], Query(description="pin a table version: TABLE:N (repeatable)")]

    def read_session(request: Request) -> ReadSession:
        """The server's session (opened by the lifespan; by the first request where none ran, e.g. a TestClient)."""
        session = request.app.state.read_session
        if session is None:
            session = request.app.state.read_session = open_session()
        return session

    def snapshot(request: Request, version: VersionQuery = []) -> Snapshot:  # noqa: B006 (FastAPI copies defaults)
        return read_session(request).snapshot(parse_versions(version))

    Snap = Annotated[Snapshot, Depends(snapshot)]

    def galaxy(wh: Snapshot, galaxy_id: str) -> None:
        from stages.records import require_galaxy

        try:
            require_galaxy(wh, galaxy_id)
        except WarehouseError as exc:
            raise HTTPException(404, f"no galaxy {galaxy_id!r}") from exc

    def check_k(k: int) -> None:
        if k > settings.max_k:
            raise InputError(f"k must be at most {settings.max_k}, got {k}")

    api = APIRouter()  # the token is checked by RequestGuard, before any body is read

    # ------------------------------------------------------------------------------------ reads
    @app.get("/healthz", response_model=HealthResponse, tags=["service"])
    def healthz() -> HealthResponse:
        """Liveness: the server answers and its warehouse opens (no token needed)."""
        return HealthResponse(tables=len(base.tables()), code_version=code_version())

    @api.get("/tables", response_model=TablesResponse, tags=["warehouse"])
    def tables(wh: Snap) -> TablesResponse:
        """Every table with its rows and Lance version."""
        from stages.records import table_summary

        return TablesResponse(tables=[TableInfo(**row) for row in table_summary(wh)])

    @api.get("/galaxies/{galaxy_id}", response_model=GalaxyRecord, tags=["galaxies"])
    def galaxy_record(galaxy_id: str, wh: Snap) -> Response:
        """Catalogue row, morphometrics, photometry, latest predictions and decoded flags of one galaxy."""
        from stages.records import galaxy_record as record

        galaxy(wh, galaxy_id)
        rec = _clean(record(wh, galaxy_id))
        rec["predictions"] = [
            Prediction(**{k: v for k, v in p.items() if k in _PREDICTION_FIELDS},
                       extra={k: v for k, v in p.items() if k not in _PREDICTION_FIELDS})
            for p in rec["predictions"]
        ]
        return _json(GalaxyRecord(**rec))

    @api.get("/galaxies/{galaxy_id}/image.png", response_class=Response, tags=["galaxies"],
             responses={200: {"content": {"image/png": {}}}})
    def galaxy_image(
        galaxy_id: str,
        wh: Snap,
        outline: Annotated[Literal["none", "truth"], Query(description="draw the true mask's edge (demo)")] = "none",
    ) -> Response:
        """The galaxy's stamp as a PNG, as the models see it (:func:`features.pixels.model_input_uint8`).

        ``outline=truth`` draws the edge of the demo survey's true galaxy mask (the ``truth`` table) in green.
        """
        from PIL import Image

        from features.pixels import model_input_uint8

        galaxy(wh, galaxy_id)
        rgb = model_input_uint8(wh.read_image(galaxy_id))
        if outline == "truth":
            rgb = _outlined(rgb, _truth_mask(wh, galaxy_id))
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png", headers={"Cache-Control": "max-age=60"})

    def _similar(wh: Snapshot, query: Any, label: str, k: int, where: str | None, encoder: str | None,
                 exclude_self: bool = False) -> Response:
        from warehouse import search

        check_k(k)
        table = search.pick_table(wh, encoder)
        found = search.similar_plan(wh, query, k=k, where=where or None, encoder=table.removeprefix("embeddings_"),
                                    exclude_query=exclude_self, limits=settings.sql_limits)
        neighbours = []
        for row in _json_rows(found.table):
            rank, gid, dist = row.pop("rank"), row.pop("galaxy_id"), row.pop("distance")
            neighbours.append(Neighbour(rank=rank, galaxy_id=gid, distance=dist, features=row))
        return _json(SimilarResponse(query=label, encoder=table.removeprefix("embeddings_"), k=k,
                                     where=where or None, neighbours=neighbours,
                                     plan=SearchPlanModel(**found.plan.as_dict()), versions=wh.pins))

    @api.get("/galaxies/{galaxy_id}/similar", response_model=SimilarResponse, tags=["search"])
    def similar_to_galaxy(
        galaxy_id: str,
        wh: Snap,
        k: Annotated[int, Query(ge=1, description="neighbours")] = 10,
        where: Annotated[str | None, Query(max_length=2000, description="SQL predicate over galaxy features")] = None,
        encoder: Annotated[str | None, Query(max_length=100)] = None,
        exclude_self: bool = False,
    ) -> Response:
        """The k nearest galaxies by cosine distance, among those matching ``where`` (applied first)."""
        galaxy(wh, galaxy_id)
        return _similar(wh, galaxy_id, galaxy_id, k, where, encoder, exclude_self)

    @api.post("/similar", response_model=SimilarResponse, tags=["search"])
    def similar_to_image(
        wh: Snap,
        file: Annotated[UploadFile, File(description="PNG, JPEG or FITS image")],
        k: Annotated[int, Form(ge=1)] = 10,
        where: Annotated[str | None, Form(max_length=2000)] = None,
        encoder: Annotated[str | None, Form(max_length=100)] = None,
    ) -> Response:
        """Lookalikes of an uploaded image, embedded with the encoder and weights of the searched table."""
        from stages.embeddings import embed_query_image
        from warehouse import search

        check_k(k)
        name = Path(file.filename or "upload").name
        with tempfile.TemporaryDirectory(prefix="astrovision-upload-") as tmp:
            pixels = read_upload(file.file, name, Path(tmp), settings.max_upload_bytes, settings.max_image_bytes)
            table = search.pick_table(wh, encoder)
            vector, enc = embed_query_image(wh, pixels, table.removeprefix("embeddings_"),
                                            allow_download=settings.allow_download)
        return _similar(wh, vector, name, k, where, enc)

    @api.post("/sql", tags=["warehouse"], response_model=SQLResponse,
              responses={200: {"content": {"application/vnd.apache.arrow.stream": {},
                                           "application/vnd.apache.parquet": {}}}})
    def sql(body: SQLRequest, wh: Snap) -> Any:
        """One read-only query over the tables and views (DuckDB), capped and timed out as in the CLI.

        ``format``: ``json`` (rows as records; binary columns as their byte length, decimals as
        numbers, times as ISO 8601 text), ``arrow`` (an Arrow IPC stream) or ``parquet``;
        ``X-Truncated`` says whether the row cap cut the result. Every DuckDB type is answered in every
        format (those no format carries faithfully as text, see
        :func:`warehouse.sql_engine.portable_projection`), or refused with a 400 naming the column.
        A result over the server's byte cap, or a query over its memory limit, is a 400 saying so.
        """
        from warehouse.search.features import serving_engine

        if body.versions:
            wh = wh.pinned({**wh.pins, **body.versions})
        cap = settings.sql_max_rows
        limit = cap if body.limit is None else min(body.limit, cap)
        # the session's engine for these versions (galaxy_features served from its held rows)
        result = serving_engine(wh).run(body.query, limit=limit)
        headers = {"X-Truncated": str(result.truncated).lower(), "X-Versions": json.dumps(wh.pins)}
        table = result.table
        if body.format == "arrow":
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return Response(sink.getvalue().to_pybytes(), media_type="application/vnd.apache.arrow.stream",
                            headers=headers)
        if body.format == "parquet":
            return Response(_parquet(table), media_type="application/vnd.apache.parquet", headers=headers)
        for i, field in enumerate(table.schema):
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                table = table.set_column(i, f"{field.name}_bytes", pc.binary_length(table.column(i)))
        return _json(SQLResponse(columns=table.column_names, rows=_json_rows(table), truncated=result.truncated,
                                 limit=result.limit, versions=wh.pins), headers)

    app.include_router(api)
    app.include_router(vo_router(settings, snapshot))  # /vo/: cone search, image access, TAP
    app.include_router(labels_router(base, snapshot))  # labels, anomalies, rankings, more-like (issue 26)

    # ------------------------------------------------------------------------------------ the page
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((_STATIC / "index.html").read_text())

    app.mount("/static", StaticFiles(directory=str(_STATIC)), name="static")
    return app
