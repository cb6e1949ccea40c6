"""``astrovision serve``: the HTTP API and web page (:mod:`service.http`) under uvicorn.

Binds 127.0.0.1 by default; any other address needs an API token (``--token-file`` or
``$ASTROVISION_API_TOKEN``), which every API request then carries as ``Authorization: Bearer``.
The token is never printed or logged.

Examples::

    astrovision serve                      # http://127.0.0.1:8000/ (page), /docs (API)
    astrovision --home ~/survey serve --port 8080
    astrovision serve --host 0.0.0.0 --token-file ~/.astrovision-token
"""

from __future__ import annotations

import argparse

from .home import warehouse_of

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.http import Settings, create_app
    from service.http.settings import read_token

    wh = warehouse_of(args)
    settings = Settings(home=wh.root, host=args.host, token=read_token(args.token_file),
                        max_upload_bytes=args.max_upload_mb * 1024 * 1024, sql_max_rows=args.sql_max_rows,
                        sql_timeout_s=args.sql_timeout, sql_max_bytes=args.sql_max_mb * 1024 * 1024,
                        sql_memory_limit=args.sql_memory_limit, sql_threads=args.sql_threads,
                        allow_download=args.allow_download)
    app = create_app(settings)
    auth = "token required" if settings.token else "no token (loopback only)"
    print(f"AstroVision on http://{args.host}:{args.port}/ for {wh.root} ({auth}); API docs at /docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, server_header=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the JSON API and the web page over HTTP (127.0.0.1 by default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (not loopback: needs a token)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-file", help="file whose first line is the API token (else $ASTROVISION_API_TOKEN)")
    p.add_argument("--max-upload-mb", type=int, default=8, help="largest image upload (default 8 MiB)")
    p.add_argument("--sql-max-rows", type=int, default=10_000, help="row cap of POST /sql")
    p.add_argument("--sql-timeout", type=float, default=10.0,
                   help="seconds before a query (or a similar's where) is interrupted")
    p.add_argument("--sql-max-mb", type=int, default=64, help="largest POST /sql result, in MiB (default 64)")
    p.add_argument("--sql-memory-limit", default="1GB", help="DuckDB memory limit of each request (default 1GB)")
    p.add_argument("--sql-threads", type=int, default=2, help="DuckDB threads of each request (default 2)")
    p.add_argument("--allow-download", action="store_true",
                   help="let an uploaded image's embedding download encoder weights (default: local/cached only)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=_cmd_serve)
