"""TAP 1.1, synchronous (``/vo/tap/sync``), with the VOSI ``tables``, ``capabilities`` and ``availability``.

``GET`` or ``POST /vo/tap/sync`` with ``LANG=ADQL`` and ``QUERY`` (``REQUEST=doQuery`` optional, as TAP 1.1
allows; ``MAXREC``; ``RESPONSEFORMAT`` / ``FORMAT`` a VOTable one): the ADQL is translated by
:mod:`service.http.vo.adql` and run by the session's read-only engine, the same as ``POST /sql`` (one
``SELECT``, no file access, row cap, byte cap, memory limit, timeout). A result cut by the row cap (or
``MAXREC``) says ``QUERY_STATUS`` = ``OVERFLOW``; ``MAXREC=0`` answers the fields only. An error (bad
ADQL, a refused statement, the timeout) is an HTTP 400 whose VOTable says ``QUERY_STATUS`` = ``ERROR``
(what pyvo raises as ``DALQueryError``). Result columns are described from
:mod:`warehouse.schemas.columns`, looked up in the relations the query names.

``/vo/tap/tables`` lists every table and view with each column's VOTable datatype, unit, UCD and
description (schema ``default``, names unqualified, as queries use them); ``/vo/tap/capabilities`` the
TAP, VOSI capabilities, tables and availability interfaces with the ADQL geometry this service
translates, its output format and limits; ``/vo/tap/availability`` whether the warehouse opens. The
XML documents are the pydantic-xml models of ``vo-models``.
"""


from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.http.vo.adql import ADQLError, translate
from service.http.vo.common import DALError, dal_params, error_response, int_param, votable_response
from service.http.vo.scs import result_docs
from service.http.vo.votable import VOInfo, field_kind, table_votable
from warehouse import Snapshot, WarehouseError
from warehouse.schemas.columns import column_docs

__all__ = ["add_routes"]

_XML = "text/xml"
_VOTABLE_FORMATS = {"", "VOTABLE", "APPLICATION/X-VOTABLE+XML", "TEXT/XML", "VOTABLE/TD",
                    "APPLICATION/X-VOTABLE+XML;SERIALIZATION=TABLEDATA"}
_GEOMETRY = ("POINT", "CIRCLE", "CONTAINS", "DISTANCE")


def _tableset(wh: Snapshot) -> bytes:
    from vo_models.vodataservice import DataType, Table, TableParam, TableSchema
    from vo_models.vosi.tables.models import VOSITableSet

    from warehouse import schemas
    from warehouse.search.features import serving_engine

    engine = serving_engine(wh)
    registered = schemas.registered()
    tables = []
    for name in [*engine.relations, *engine.views]:
        arrow = engine.run(f'SELECT * FROM "{name}" LIMIT 0', limit=0).table.schema
        try:
            docs = column_docs(name)
        except KeyError:
            docs = {}
        columns = []
        for field in arrow:
            kind = field_kind(field.type)
            doc = docs.get(field.name)
            description = doc.description if doc else None
            if kind.convert == "bytes":
                description = f"answered as its size in bytes ({field.name}_bytes): {description or field.name}"
            columns.append(TableParam(
                column_name=field.name, description=description or None, unit=(doc.unit if doc else None),
                ucd=(doc.ucd if doc else None),
                datatype=DataType(value=kind.datatype, arraysize=kind.arraysize)))
        kind_of = "table" if name in engine.relations else "view"
        description = registered[name].description if name in registered else f"the {name} view (sql/)"
        tables.append(Table(table_name=name, table_type=kind_of, description=description or None,
                            column=columns))
    tableset = VOSITableSet(tableset_schema=[TableSchema(
        schema_name="default", description="every table and view of the AstroVision warehouse", table=tables)])
    return tableset.to_xml(skip_empty=True, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _capabilities(base: str, settings: Any) -> bytes:
    from vo_models.tapregext.models import (
        DataLimit,
        DataLimits,
        Language,
        LanguageFeature,
        LanguageFeatureList,
        OutputFormat,
        TableAccess,
        TimeLimits,
        Version,
    )
    from vo_models.vodataservice.models import ParamHTTP
    from vo_models.voresource.models import AccessURL, Capability
    from vo_models.vosi.capabilities.models import VOSICapabilities

    def interface(url: str, use: str, **kw: Any) -> ParamHTTP:
        return ParamHTTP(access_url=[AccessURL(value=url, use=use)], **kw)

    geo = LanguageFeatureList(type="ivo://ivoa.net/std/TAPRegExt#features-adql-geo",
                              feature=[LanguageFeature(form=f) for f in _GEOMETRY])
    tap = TableAccess(
        interface=[interface(base, "base", role="std", version="1.1")],
        language=[Language(name="ADQL", version=[Version(value="2.0", ivo_id="ivo://ivoa.net/std/ADQL#v2.0")],
                           description="ADQL translated to DuckDB SQL (POINT in CIRCLE and DISTANCE only)",
                           language_features=[geo])],
        output_format=[OutputFormat(mime="application/x-votable+xml", alias=["votable"],
                                    ivo_id="ivo://ivoa.net/std/TAPRegExt#output-votable-td")],
        execution_duration=TimeLimits(hard=int(settings.sql_timeout_s)),
        output_limit=DataLimits(default=DataLimit(value=settings.sql_max_rows, unit="row"),
                                hard=DataLimit(value=settings.sql_max_rows, unit="row")))
    vosi = [Capability(standard_id=f"ivo://ivoa.net/std/VOSI#{what}", interface=[interface(f"{base}/{what}", "full")])
            for what in ("capabilities", "tables", "availability")]
    return VOSICapabilities(capability=[tap, *vosi]).to_xml(skip_empty=True, pretty_print=True,
                                                            xml_declaration=True, encoding="UTF-8")


def add_routes(router: APIRouter, settings: Any, snapshot: Any) -> None:
    """Add ``/tap/sync``, ``/tap/tables``, ``/tap/capabilities`` and ``/tap/availability`` to ``router``."""
    from warehouse.search.features import serving_engine

    Snap = Annotated[Snapshot, Depends(snapshot)]
    Params = Annotated[dict[str, str], Depends(dal_params)]
    votable = {200: {"content": {"application/x-votable+xml": {}}}}
    xml = {200: {"content": {_XML: {}}}}

    def sync(wh: Snapshot, params: dict[str, str]) -> Response:
        try:
            request = params.get("REQUEST", "doQuery")
            if request.lower() != "doquery":
                raise DALError(f"REQUEST must be doQuery, got {request[:40]!r}")
            lang = params.get("LANG", "")
            if lang.upper().split("-")[0] != "ADQL":
                raise DALError(f"LANG must be ADQL, got {lang[:40]!r}" if lang else "parameter LANG=ADQL is required")
            fmt = (params.get("RESPONSEFORMAT") or params.get("FORMAT") or "").replace(" ", "").upper()
            if fmt not in _VOTABLE_FORMATS:
                raise DALError(f"RESPONSEFORMAT {fmt.lower()[:60]!r} is not served; use votable")
            query = params.get("QUERY")
            if not query:
                raise DALError("parameter QUERY is required")
            cap = settings.sql_max_rows
            maxrec = int_param(params, "MAXREC", cap, low=0)
            adql = translate(query)
            result = serving_engine(wh).run(adql.sql, limit=min(maxrec, cap))
        except (DALError, ADQLError, WarehouseError) as exc:
            return error_response(str(exc), 400)
        overflow = result.truncated and maxrec > 0
        vot = table_votable(result.table, result_docs(result.table.column_names, adql.tables), overflow=overflow,
                            infos=[VOInfo("QUERY", query[:2000]),
                                   VOInfo("versions", ",".join(f"{k}:{v}" for k, v in sorted(wh.pins.items())))])
        return votable_response(vot)

    @router.get("/tap/sync", response_class=Response, responses=votable, tags=["vo"])
    def tap_sync_get(wh: Snap, params: Params) -> Response:
        """TAP 1.1 synchronous query: ``LANG=ADQL``, ``QUERY``, ``MAXREC``, ``RESPONSEFORMAT``."""
        return sync(wh, params)

    @router.post("/tap/sync", response_class=Response, responses=votable, tags=["vo"])
    def tap_sync_post(wh: Snap, params: Params) -> Response:
        """TAP 1.1 synchronous query, parameters as form fields."""
        return sync(wh, params)

    @router.get("/tap/tables", response_class=Response, responses=xml, tags=["vo"])
    def tap_tables(wh: Snap) -> Response:
        """VOSI tables: every table and view, each column's datatype, unit, UCD and description."""
        return Response(_tableset(wh), media_type=_XML)

    @router.get("/tap/capabilities", response_class=Response, responses=xml, tags=["vo"])
    def tap_capabilities(request: Request) -> Response:
        """VOSI capabilities: TAP (ADQL 2.0, VOTable output, limits) and the VOSI endpoints."""
        return Response(_capabilities(str(request.base_url) + "vo/tap", settings), media_type=_XML)

    @router.get("/tap/availability", response_class=Response, responses=xml, tags=["vo"])
    def tap_availability(wh: Snap) -> Response:
        """VOSI availability: the warehouse opens and answers a query."""
        from vo_models.vosi.availability.models import Availability

        try:
            serving_engine(wh).run("SELECT 1 AS ok", limit=1)
            doc = Availability(available=True, note=[f"serving; checked {datetime.now(UTC).isoformat()}"])
        except WarehouseError as exc:
            doc = Availability(available=False, note=[str(exc).splitlines()[0][:300]])
        return Response(doc.to_xml(skip_empty=True, xml_declaration=True, encoding="UTF-8"), media_type=_XML)
