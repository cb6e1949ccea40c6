"""The HTTP face of the warehouse: a FastAPI app (JSON API + a small web page) served by uvicorn.

``create_app(settings)`` builds it; ``astrovision serve`` runs it. The handlers are thin: they call the
same plain functions as the CLI (:mod:`stages.records`, :func:`warehouse.search.similar`,
:func:`stages.embeddings.embed_query_image`, :meth:`warehouse.sql_engine.SQLEngine.run`).
"""

from service.http.app import create_app
from service.http.settings import Settings, is_loopback

__all__ = ["Settings", "create_app", "is_loopback"]
