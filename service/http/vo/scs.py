"""Simple Cone Search 1.03 (``/vo/scs``) and lookalikes shaped like a cone search (``/vo/similar``).

``GET /vo/scs?RA=&DEC=&SR=`` (degrees, ICRS): the galaxies within ``SR`` of the position, nearest first,
one row each: the ``galaxy_features`` view (catalogue, morphometrics, photometry, flags), the newest
gate-passing prediction of one model (``MODEL=``, default the first by name) and ``_r``, the distance
from the centre in degrees. The three fields SCS 1.03 requires carry the UCD1 words ``ID_MAIN``,
``POS_EQ_RA_MAIN`` and ``POS_EQ_DEC_MAIN`` (what pyvo's ``SCSRecord.id`` / ``.pos`` look up); every
other field its UCD1+ word, unit and description from :mod:`warehouse.schemas.columns`. ``VERB=1``:
only those three and ``_r``; ``2`` (default) and ``3``: every column. ``SR=0``: the fields, no rows.
``MAXREC`` (at most the server's SQL row cap) cuts the rows, and ``QUERY_STATUS`` says ``OVERFLOW``.
A galaxy without a position is in no cone.

``GET /vo/similar?ID=&K=`` (or ``RA=&DEC=`` [``SR=``]: the galaxy with embeddings nearest that
position is the query): the ``K`` nearest galaxies by cosine distance of their embeddings, as the
same kind of VOTable with ``rank`` and ``distance`` columns (``ENCODER=`` picks the table), so
TOPCAT can load and plot them and Aladin overlay them.
"""


import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from service.http.vo.common import (
    DALError,
    dal_params,
    error_response,
    float_param,
    int_param,
    votable_response,
)
from service.http.vo.votable import VOInfo, table_votable
from warehouse import Snapshot, WarehouseError
from warehouse.schemas.columns import ColumnDoc, find_doc

__all__ = ["SCS_UCD1", "add_routes", "result_docs"]

SCS_UCD1 = {"galaxy_id": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}
"""The UCD1 words SCS 1.03 asks for, by column (exactly one field each)."""

_LOCAL_DOCS = {
    "_r": ColumnDoc("deg", "pos.angDistance", "distance from the cone's centre"),
    "rank": ColumnDoc(None, "meta.number", "rank of the neighbour, 1 nearest"),
    "distance": ColumnDoc(None, "stat.value", "cosine distance of the embeddings to the query galaxy's"),
    "query_sep_deg": ColumnDoc("deg", "pos.angDistance", "distance of the galaxy from the query position"),
}
_RELATIONS = ("galaxy_features", "latest_predictions")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


def result_docs(columns: list[str], relations: tuple[str, ...] = _RELATIONS) -> dict[str, ColumnDoc | None]:
    """The doc of each result column: computed VO columns first, then the registry's."""
    return {c: _LOCAL_DOCS.get(c) or find_doc(c, relations) for c in columns}


def columns_markdown(relations: tuple[str, ...] = _RELATIONS) -> str:
    """A Markdown table of the columns of ``relations`` (name, unit, UCD, description), for the API docs."""
    from warehouse.schemas.columns import column_docs

    rows, seen = ["| column | unit | UCD | description |", "|---|---|---|---|"], set()
    for rel in relations:
        for name, doc in column_docs(rel).items():
            if name not in seen:
                seen.add(name)
                rows.append(f"| `{name}` | {doc.unit or ''} | {doc.ucd or ''} | {doc.description} |")
    return "\n".join(rows)


def _cone_sql(ra: float, dec: float, sr: float, model: str | None) -> str:
    model_filter = f"WHERE model_name = '{model}'" if model else ""
    where = "false" if sr == 0 else f"cone(f.ra, f.dec, {ra!r}, {dec!r}, {sr * 3600.0!r})"
    return f"""
        WITH pred AS (
            SELECT galaxy_id, model_name, model_version, predicted_name, confidence FROM latest_predictions
            {model_filter}
            QUALIFY row_number() OVER (PARTITION BY galaxy_id ORDER BY model_name, model_version DESC) = 1
        )
        SELECT f.*, p.model_name, p.model_version, p.predicted_name, p.confidence,
               ang_sep_arcsec(f.ra, f.dec, {ra!r}, {dec!r}) / 3600.0 AS _r
        FROM galaxy_features f LEFT JOIN pred p USING (galaxy_id)
        WHERE {where}
        ORDER BY _r, f.galaxy_id
    """


def _name_param(params: dict[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _NAME.fullmatch(value):
        raise DALError(f"parameter {name} must be letters, digits, '_', '.' or '-', got {value[:40]!r}")
    return value


def add_routes(router: APIRouter, settings: Any, snapshot: Any) -> None:
    """Add ``/scs`` and ``/similar`` to ``router`` (``snapshot``: the app's snapshot dependency)."""
    from warehouse.search.features import serving_engine

    Snap = Annotated[Snapshot, Depends(snapshot)]
    Params = Annotated[dict[str, str], Depends(dal_params)]
    responses = {200: {"content": {"application/x-votable+xml": {}}}}

    columns = columns_markdown(("galaxy_features",))

    @router.get("/scs", response_class=Response, responses=responses, tags=["vo"],
                description=("IVOA Simple Cone Search 1.03: `RA`, `DEC`, `SR` in degrees (ICRS); `VERB`, "
                             "`MAXREC`, `MODEL`. Errors are a VOTable with `INFO name=\"Error\"`.\n\n"
                             "Columns (plus `model_name`, `model_version`, `predicted_name`, `confidence` of "
                             "the newest gate-passing prediction, and `_r`):\n\n") + columns)
    def scs(wh: Snap, params: Params) -> Response:
        """IVOA Simple Cone Search 1.03: ``RA``, ``DEC``, ``SR`` in degrees (ICRS); ``VERB``, ``MAXREC``,
        ``MODEL``. Errors are a VOTable with ``INFO name="Error"``."""
        try:
            ra = float_param(params, "RA", low=0.0, high=360.0)
            dec = float_param(params, "DEC", low=-90.0, high=90.0)
            sr = float_param(params, "SR", low=0.0, high=180.0)
            verb = int_param(params, "VERB", 2, low=1, high=3)
            cap = settings.sql_max_rows
            maxrec = int_param(params, "MAXREC", cap, low=0, high=None)
            model = _name_param(params, "MODEL")
            result = serving_engine(wh).run(_cone_sql(ra, dec, sr, model), limit=min(maxrec, cap))
        except (DALError, WarehouseError) as exc:
            return error_response(str(exc))
        table = result.table
        if verb == 1:
            table = table.select(["galaxy_id", "ra", "dec", "_r"])
        vot = table_votable(table, result_docs(table.column_names), ucd1=SCS_UCD1, overflow=result.truncated,
                            description=f"galaxies within {sr:g} deg of ({ra:g}, {dec:g})",
                            infos=[VOInfo("versions", ",".join(f"{k}:{v}" for k, v in sorted(wh.pins.items())))])
        return votable_response(vot)

    def _nearest(wh: Snapshot, table: str, ra: float, dec: float, sr: float | None) -> tuple[str, float]:
        rows = serving_engine(wh).run(
            f"SELECT g.galaxy_id, ang_sep_arcsec(g.ra, g.dec, {ra!r}, {dec!r}) / 3600.0 AS sep FROM galaxies g "
            f"SEMI JOIN \"{table}\" e USING (galaxy_id) WHERE g.ra IS NOT NULL AND g.dec IS NOT NULL "
            f"ORDER BY sep, g.galaxy_id LIMIT 1", limit=1).table.to_pylist()
        if not rows or (sr is not None and rows[0]["sep"] > sr):
            within = "" if sr is None else f" within {sr:g} deg"
            raise DALError(f"no galaxy with a position and {table} embeddings{within} of ({ra:g}, {dec:g})")
        return rows[0]["galaxy_id"], rows[0]["sep"]

    @router.get("/similar", response_class=Response, responses=responses, tags=["vo"])
    def similar(wh: Snap, params: Params) -> Response:
        """Lookalikes as a cone-search-shaped VOTable: ``ID`` (or ``RA`` and ``DEC``, optionally ``SR``),
        ``K`` (default 10), ``ENCODER``; columns as ``/vo/scs`` plus ``rank`` and ``distance``."""
        from warehouse import search

        infos = []
        try:
            k = int_param(params, "K", 10, low=1, high=settings.max_k)
            encoder = _name_param(params, "ENCODER")
            table = search.pick_table(wh, encoder)
            gid = params.get("ID")
            if gid:
                from stages.records import require_galaxy

                try:
                    require_galaxy(wh, gid)
                except WarehouseError:
                    raise DALError(f"no galaxy {gid[:200]!r}") from None
            elif "RA" in params or "DEC" in params:
                ra = float_param(params, "RA", low=0.0, high=360.0)
                dec = float_param(params, "DEC", low=-90.0, high=90.0)
                sr = float_param(params, "SR", low=0.0, high=180.0) if params.get("SR") else None
                gid, sep = _nearest(wh, table, ra, dec, sr)
                infos.append(VOInfo("query_separation_deg", f"{sep:.8g}"))
            else:
                raise DALError("give ID (a galaxy id) or RA and DEC (degrees) of the query galaxy")
            found = search.similar_plan(wh, gid, k=k, encoder=table.removeprefix("embeddings_"),
                                        limits=settings.sql_limits)
        except (DALError, WarehouseError, KeyError, ValueError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            return error_response(str(text))
        result = found.table
        names = ["galaxy_id", "ra", "dec", "rank", "distance"]
        result = result.select(names + [c for c in result.column_names if c not in names])
        infos += [VOInfo("query_galaxy", gid), VOInfo("encoder", table.removeprefix("embeddings_"))]
        vot = table_votable(result, result_docs(result.column_names), ucd1=SCS_UCD1, infos=infos,
                            description=f"the {k} galaxies most similar to {gid}")
        return votable_response(vot)
