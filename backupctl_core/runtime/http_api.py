"""Internal HTTP endpoints (no authentication: keep them on 127.0.0.1 or behind a
proxy): ``GET``/``HEAD`` ``/health``, ``/status``, ``/status/{project}`` (JSON) and
``/metrics`` (Prometheus text).

Served by waitress, a maintained pure-Python WSGI server, for what a hand-rolled
threading server lacked: a bounded worker pool, a cap on open connections, idle
connections closed after a timeout, and no traceback when a client goes away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from attrs import frozen

log = logging.getLogger("backupctl.http")

Route = Callable[[str], tuple[int, Any]]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]

WORKER_THREADS = 4  # requests served at once; more wait in waitress's queue
CONNECTION_LIMIT = 64  # open connections; beyond it waitress stops accepting
IDLE_TIMEOUT_SECONDS = 10  # an idle (or slow-loris) connection is closed after this


@frozen
class Text:
    """A route's body sent as it is, with its own content type (JSON otherwise)."""

    body: str
    content_type: str = "text/plain; charset=utf-8"


def printable(text: str, limit: int = 200) -> str:
    """``text`` fit for one log line: control characters escaped, length bounded."""
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[:limit])
    return safe + ("…" if len(text) > limit else "")


class HttpApi:
    def __init__(
        self, host: str, port: int, route: Route, *, idle_timeout: int = IDLE_TIMEOUT_SECONDS
    ) -> None:
        from waitress.server import create_server  # only ``serve`` pays for the import

        self.route = route
        self._server = create_server(
            self.wsgi,
            host=host,
            port=port,
            threads=WORKER_THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=idle_timeout,
            cleanup_interval=idle_timeout,  # how often idle connections are looked for
            ident="backupctl",
            expose_tracebacks=False,
            asyncore_use_poll=True,
        )
        self._thread = threading.Thread(target=self._serve, name="backupctl-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the socket closed under the loop by ``stop``
            self._server.run()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.close()
        self._thread.join(5)

    def wsgi(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status: int
        body: Any
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "") or "/"
        if method not in ("GET", "HEAD"):
            status, body = HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{method} not allowed"}
        else:
            try:
                status, body = self.route(path)
            except Exception as error:  # report as JSON; the server thread lives on
                log.error("%s %s failed: %s", method, printable(path), printable(str(error)))
                status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)}
        log.debug("%s %s -> %d", method, printable(path), status)
        if isinstance(body, Text):
            data, content_type = body.body.encode(), body.content_type
        else:
            data = json.dumps(body, default=str, ensure_ascii=False).encode()
            content_type = "application/json; charset=utf-8"
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data)))]
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            headers.append(("Allow", "GET, HEAD"))
        start_response(f"{int(status)} {HTTPStatus(status).phrase}", headers)
        return [b""] if method == "HEAD" else [data]
