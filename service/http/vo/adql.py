"""ADQL to the warehouse's DuckDB SQL, through sqlglot's syntax tree (never by editing the text).

Parser choice (issue 27): ``queryparser-python3`` (0.8) parses ADQL 2.0 with its own grammar but only
writes PostgreSQL + pg_sphere (``spoint``, ``scircle``, ``@``) or MySQL, which DuckDB cannot run, so its
output would need a second parser; ``pyadql`` needs Python 3.12; ``sqlglot`` (maintained, monthly
releases) parses everything TOPCAT and pyvo send here when read as T-SQL (``SELECT TOP n``, ``"quoted"``
names, ``||``, ``OFFSET``), keeps the ADQL geometry functions as nodes of its tree, and writes DuckDB.

The tree is rewritten before DuckDB's SQL is written:

* ``CONTAINS(POINT('ICRS', a, b), CIRCLE('ICRS', ra0, dec0, r)) = 1`` (either side, ``= 0`` too) ->
  ``cone(a, b, ra0, dec0, r * 3600)``, the warehouse's haversine cone macro (a position-less galaxy
  is in no cone); ``CIRCLE('ICRS', POINT(...), r)`` (ADQL 2.1) as well;
* ``DISTANCE(POINT(..), POINT(..))`` and ``DISTANCE(a, b, c, d)`` -> ``ang_sep_arcsec(...) / 3600``
  (degrees);
* math functions as ADQL defines them: ``LOG`` natural (DuckDB's ``log`` is base 10), ``LOG10``,
  ``TRUNCATE``, ``MOD``, ``CEILING``, ``RAND`` ...; sqlglot maps them;
* ``ORDER BY`` puts nulls last, as DuckDB does (T-SQL, whose syntax is read, would put them first);
* any other geometry (``BOX``, ``POLYGON``, ``REGION``, ``INTERSECTS``, ``AREA``, ``COORD1`` ...), a
  coordinate system other than ICRS, or more than one statement is an :class:`ADQLError`.

The result is run by :class:`warehouse.sql_engine.SQLEngine` like any SQL of the service: one read-only
``SELECT``, no file access, a row cap, a byte cap and a timeout; the translation is a convenience, not
the guard.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from features.errors import InputError

__all__ = ["ADQLError", "Translation", "translate"]

_UNSUPPORTED_GEOMETRY = frozenset({"BOX", "POLYGON", "REGION", "INTERSECTS", "AREA", "CENTROID", "COORD1", "COORD2",
                                   "COORDSYS", "POINT", "CIRCLE"})
_FRAMES = frozenset({"", "ICRS", "ICRS GEOCENTER", "ICRS TOPOCENTER", "ICRS BARYCENTER"})


@dataclass(frozen=True)
class Translation:
    """DuckDB SQL of an ADQL query and the tables and views it names (to describe its columns)."""

    sql: str
    tables: tuple[str, ...]


class ADQLError(InputError):
    """An ADQL query that does not parse or uses what this service does not translate (one line)."""


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).upper()
    if isinstance(node, exp.Func):
        return node.sql_name().upper()
    return ""


def _args(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    return [a for a in node.args.values() if isinstance(a, exp.Expression)]


def _frame(arg: exp.Expression, what: str) -> None:
    if not isinstance(arg, exp.Literal) or not arg.is_string:
        raise ADQLError(f"{what}: the first argument must be a coordinate system string such as 'ICRS'")
    if arg.this.strip().upper() not in _FRAMES:
        raise ADQLError(f"{what}: coordinate system {arg.this!r} is not supported here, only 'ICRS'")


def _point(node: exp.Expression) -> tuple[exp.Expression, exp.Expression]:
    """(ra, dec) of ``POINT('ICRS', ra, dec)`` (or ``POINT(ra, dec)``, ADQL 2.1)."""
    if _name(node) != "POINT":
        raise ADQLError(f"expected POINT('ICRS', ra, dec), got {node.sql('tsql')[:80]}")
    args = _args(node)
    if len(args) == 3:
        _frame(args[0], "POINT")
        args = args[1:]
    if len(args) != 2:
        raise ADQLError("POINT takes ('ICRS', ra, dec)")
    return args[0], args[1]


def _circle(node: exp.Expression) -> tuple[exp.Expression, exp.Expression, exp.Expression]:
    """(ra, dec, radius in degrees) of ``CIRCLE('ICRS', ra, dec, r)`` or ``CIRCLE('ICRS', POINT(..), r)``."""
    if _name(node) != "CIRCLE":
        kind = _name(node) or "this region"
        raise ADQLError(f"CONTAINS: only a POINT in a CIRCLE is supported here, not {kind}")
    args = _args(node)
    if args and isinstance(args[0], exp.Literal) and args[0].is_string:
        _frame(args[0], "CIRCLE")
        args = args[1:]
    if len(args) == 2 and _name(args[0]) == "POINT":
        ra, dec = _point(args[0])
        return ra, dec, args[1]
    if len(args) != 3:
        raise ADQLError("CIRCLE takes ('ICRS', ra, dec, radius)")
    return args[0], args[1], args[2]


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=[a.copy() for a in args])


def _cone(node: exp.Expression) -> exp.Expression:
    """``cone(...)`` as an integer 1/0 for ``CONTAINS(POINT, CIRCLE)``."""
    args = _args(node)
    if len(args) != 2:
        raise ADQLError("CONTAINS takes (POINT(...), CIRCLE(...))")
    ra, dec = _point(args[0])
    ra0, dec0, radius = _circle(args[1])
    arcsec = exp.Mul(this=exp.Paren(this=radius.copy()), expression=exp.Literal.number(3600))
    return exp.Cast(this=_call("cone", ra, dec, ra0, dec0, arcsec), to=exp.DataType.build("INTEGER"))


def _distance(node: exp.Expression) -> exp.Expression:
    args = _args(node)
    if len(args) == 2:
        (ra, dec), (ra0, dec0) = _point(args[0]), _point(args[1])
    elif len(args) == 4:
        ra, dec, ra0, dec0 = args
    else:
        raise ADQLError("DISTANCE takes (POINT(...), POINT(...)) or (ra1, dec1, ra2, dec2)")
    return exp.Paren(this=exp.Div(this=_call("ang_sep_arcsec", ra, dec, ra0, dec0),
                                  expression=exp.Literal.number(3600.0)))


def _rewrite(node: exp.Expression) -> exp.Expression:
    name = _name(node)
    if isinstance(node, exp.Contains) or name == "CONTAINS":
        return _cone(node)
    if name == "DISTANCE":
        return _distance(node)
    if isinstance(node, exp.Ordered) and node.args.get("nulls_first"):
        node.set("nulls_first", False)  # nulls last, as DuckDB orders them
    return node


def translate(adql: str) -> Translation:
    """The DuckDB SQL of one ADQL ``SELECT``, and the relations it reads.

    Raises
    ------
    ADQLError
        The text does not parse as one query, or uses geometry other than a POINT in a CIRCLE and
        DISTANCE (the message says what and where).
    """
    text = (adql or "").strip().rstrip(";").strip()
    if not text:
        raise ADQLError("the ADQL query is empty")
    try:
        statements = [s for s in sqlglot.parse(text, read="tsql") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ADQLError(f"ADQL syntax error: {first}") from None
    if len(statements) != 1:
        raise ADQLError(f"expected exactly one ADQL query, got {len(statements)}")
    tree = statements[0].transform(_rewrite)
    for node in tree.walk():
        if _name(node) in _UNSUPPORTED_GEOMETRY:
            raise ADQLError(f"ADQL {_name(node)} is not supported here (only CONTAINS(POINT, CIRCLE) and DISTANCE)")
    tables = tuple(dict.fromkeys(t.name for t in tree.find_all(exp.Table) if t.name))
    try:
        return Translation(tree.sql(dialect="duckdb"), tables)
    except sqlglot.errors.SqlglotError as exc:
        raise ADQLError(f"ADQL cannot be translated: {str(exc).strip().splitlines()[0]}") from None
