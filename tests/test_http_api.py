"""The HTTP endpoints' server under abuse: many idle connections, clients that
go away, odd methods and request lines. A real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest

from backupctl_core.runtime.http_api import CONNECTION_LIMIT, HttpApi, Text


def route(path: str) -> tuple[int, Any]:
    if path == "/health":
        return HTTPStatus.OK, {"status": "ok"}
    if path == "/text":
        return HTTPStatus.OK, Text("a_metric 1\n", "text/plain; version=0.0.4; charset=utf-8")
    if path == "/boom":
        raise RuntimeError("the store exploded")
    return HTTPStatus.NOT_FOUND, {"error": "not found"}


@pytest.fixture
def api() -> Iterator[HttpApi]:
    server = HttpApi("127.0.0.1", 0, route, idle_timeout=1)
    server.start()
    yield server
    server.stop()


def request(api: HttpApi, raw: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def get(api: HttpApi, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    raw = request(api, f"{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_get_head_and_other_methods(api: HttpApi) -> None:
    status, headers, body = get(api, "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, headers, body = get(api, "/health", "HEAD")  # was 501
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    status, headers, body = get(api, "/health", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert json.loads(body) == {"error": "POST not allowed"}


def test_a_route_may_answer_text_with_its_own_content_type(api: HttpApi) -> None:
    status, headers, body = get(api, "/text")
    assert status == 200 and body == b"a_metric 1\n"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    status, headers, body = get(api, "/text", "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "11"
    assert get(api, "/health")[1]["Content-Type"] == "application/json; charset=utf-8"


def test_a_failing_route_is_a_json_500_without_a_traceback(
    api: HttpApi, caplog: pytest.LogCaptureFixture
) -> None:
    status, _, body = get(api, "/boom")
    assert status == 500 and json.loads(body) == {"error": "the store exploded"}
    assert "GET /boom failed: the store exploded" in caplog.text
    assert "Traceback" not in caplog.text


def test_idle_connections_neither_pile_up_threads_nor_block_health(api: HttpApi) -> None:
    threads_before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(CONNECTION_LIMIT // 2)]
    try:
        assert threading.active_count() - threads_before <= 8  # a pool, not a thread each
        started = time.monotonic()
        assert get(api, "/health")[0] == 200
        assert time.monotonic() - started < 5  # was ~10 s unavailable
        # Idle connections are closed by the server after its idle timeout (1 s here).
        idle[0].settimeout(10)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()


def test_clients_that_go_away_leave_no_traceback(
    api: HttpApi, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", api.port))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # no end of headers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, mid-request
    assert get(api, "/health")[0] == 200
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_control_characters_in_the_request_line_are_escaped_in_the_log(
    api: HttpApi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="backupctl.http")
    request(api, b"GET /he\x1b[31mlth HTTP/1.0\r\n\r\n")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "backupctl.http"]
    assert "\x1b" not in line and "/he\\x1b[31mlth" in line
