"""What the VO routes share: case-insensitive DAL parameters, numbers read from them, VOTable responses.

DAL parameter names are case-insensitive (pyvo sends ``RA``, STILTS ``ra``); a POST's form fields count
as parameters too (TAP). Every answer, an error included, is a VOTable (:mod:`service.http.vo.votable`);
the error of a simple (DAL 1) service is an HTTP 200 whose VOTable carries ``INFO name="Error"`` (SCS
1.03, SIA 1.0), that of TAP an HTTP 400 with ``QUERY_STATUS`` ``ERROR`` (DALI).
"""

from __future__ import annotations

import math
import re

from fastapi import Request
from fastapi.responses import Response

from features.errors import InputError
from service.http.vo.votable import VOTABLE_MIME, error_votable, votable_bytes

__all__ = ["DALError", "dal_params", "error_response", "float_param", "int_param", "votable_response"]


_ABSOLUTE = re.compile(r"(?<![\w:/.])(?:/[\w.+@=-]+){2,}/?")
"""An absolute POSIX path of two or more parts: an error answer names its last part only."""


class DALError(InputError):
    """A bad DAL request (one line), answered as a VOTable error."""


async def dal_params(request: Request) -> dict[str, str]:
    """The request's parameters, names upper-cased; a form body (POST) adds to the query string."""
    params = {k.upper(): v for k, v in request.query_params.items()}
    if request.method == "POST":
        try:
            form = await request.form()
        except Exception as exc:  # a malformed multipart or urlencoded body (Starlette's parsers raise several types)
            raise DALError(f"the request body is not a readable form ({type(exc).__name__})") from None
        params.update({k.upper(): v for k, v in form.items() if isinstance(v, str)})
    return params


def float_param(params: dict[str, str], name: str, *, low: float | None = None, high: float | None = None,
                default: float | None = None) -> float:
    """Parameter ``name`` as a finite float in ``[low, high]`` (``DALError`` naming it otherwise)."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        if default is None:
            raise DALError(f"parameter {name} is required")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DALError(f"parameter {name} must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise DALError(f"parameter {name} must be between {low:g} and {high:g}, got {raw[:40]}")
    return value


def int_param(params: dict[str, str], name: str, default: int, *, low: int = 0, high: int | None = None) -> int:
    """Parameter ``name`` as an integer in ``[low, high]``, ``default`` when absent."""
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DALError(f"parameter {name} must be an integer, got {raw[:40]!r}") from None
    if value < low or (high is not None and value > high):
        raise DALError(f"parameter {name} must be between {low} and {high}, got {value}")
    return value


def votable_response(vot, status_code: int = 200) -> Response:
    """A VOTable answer (``application/x-votable+xml``)."""
    return Response(votable_bytes(vot), status_code=status_code, media_type=VOTABLE_MIME)


def error_response(message: str, status_code: int = 200) -> Response:
    """An error as a VOTable (one line, no absolute path of the server: a path becomes its last part)."""
    lines = str(message).strip().splitlines()
    line = _ABSOLUTE.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], lines[0]) if lines else "bad request"
    return votable_response(error_votable(line[:500]), status_code)
