"""The gate in front of the app: the API token and the body size, decided before the body is read.

A pure ASGI middleware (:class:`RequestGuard`), outermost but for Starlette's error middleware, so:

* a request to a protected path without the right ``Authorization: Bearer <token>`` is answered 401
  from its headers alone: not one byte of its body is read or spooled;
* a declared ``Content-Length`` over the limit is answered 413 at once, and a body without one
  (``Transfer-Encoding: chunked``) is counted while it is read: the first chunk past the limit stops
  the request with a 413, so at most the limit (plus one chunk) ever reaches the app's parser;
* a bug (an exception no handler turned into a 4xx) is answered with the one-line 500 here and logged,
  not re-raised to uvicorn, which would close the client's keep-alive connection.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["PUBLIC_PATHS", "PUBLIC_PREFIXES", "RequestGuard", "token_matches"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
                          "/favicon.ico"})
"""Paths open without the token: liveness, the page, the API's description."""
PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/")
"""Folders of static files open without the token (the page's and the docs' assets)."""


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


class _TooLarge(Exception):
    """The body grew past the limit while it was read."""


async def _answer(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: token before body, body size bounded while reading.

    Parameters
    ----------
    app : ASGI app
        The app behind the gate.
    token : str or None
        The API token protected paths need (``None``: none needed).
    max_body_bytes : int
        Largest request body accepted (413 above), whether declared or streamed.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = int(max_body_bytes)

    def _public(self, path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.token is not None and not self._public(scope.get("path", "")) and not token_matches(
                headers.get("authorization"), self.token):
            await _answer(send, 401, "missing or wrong API token (Authorization: Bearer <token>)",
                          {"WWW-Authenticate": "Bearer"})
            return
        limit = self.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"request body of {int(declared)} bytes exceeds the {limit} byte limit")
            return
        received = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if over:  # the app's answer to a body cut short is replaced by the 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception as exc:
            if started:
                raise
            if not over:
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                await _answer(send, 500, f"internal error ({type(exc).__name__}); the server log has the details")
                return
        if over and not started:
            await _answer(send, 413, f"request body exceeds the {limit} byte limit (read {received} bytes)",
                          {"Connection": "close"})
