"""The Virtual Observatory face of the service, under ``/vo/`` on the app of ``astrovision serve``.

* ``/vo/scs``: Simple Cone Search 1.03 (:mod:`service.http.vo.scs`);
* ``/vo/similar``: lookalikes of a galaxy as a cone-search-shaped VOTable (:mod:`service.http.vo.scs`);
* ``/vo/sia`` and ``/vo/sia/image``: Simple Image Access 1.0, stamps as FITS with a TAN WCS or PNG
  (:mod:`service.http.vo.sia`);
* ``/vo/tap/sync``, ``/vo/tap/tables``, ``/vo/tap/capabilities``, ``/vo/tap/availability``: TAP 1.1
  synchronous queries in ADQL (:mod:`service.http.vo.adql`) and VOSI (:mod:`service.http.vo.tap`).

Answers are VOTables written by astropy (:mod:`service.http.vo.votable`) with each column's unit, UCD
and description from :mod:`warehouse.schemas.columns`; VOSI documents are ``vo-models``' pydantic-xml
models. The routes read the request's snapshot like every other route, run their SQL through the
session's read-only engine, and sit behind the same token gate (:class:`service.http.guard.RequestGuard`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

__all__ = ["vo_router"]


def vo_router(settings: Any, snapshot: Any) -> APIRouter:
    """The ``/vo`` routes for the app built from ``settings``; ``snapshot`` is its snapshot dependency."""
    from service.http.vo import scs, sia, tap

    router = APIRouter(prefix="/vo")
    for module in (scs, sia, tap):
        module.add_routes(router, settings, snapshot)
    return router
