"""Internal HTTP endpoints (no authentication: bind them to an internal
network only): ``GET /health``, ``GET /status``, ``GET /status/{project}``.
The standard library's threading server: small, and nothing to keep up to date."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("backupctl.http")

Route = Callable[[str], tuple[int, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        try:
            status, body = self.server.route(self.path.split("?", 1)[0])
        except Exception as error:  # report, never crash the server thread
            log.exception("GET %s failed", self.path)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(error)}
        data = json.dumps(body, default=str, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], route: Route) -> None:
        super().__init__(address, _Handler)
        self.route = route


class HttpApi:
    def __init__(self, host: str, port: int, route: Route) -> None:
        self._server = _Server((host, port), route)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="backupctl-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
