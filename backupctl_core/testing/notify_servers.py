"""Helpers for the notifier plugin tests: sample events, free ports, a never-answering
listener and a real SMTP server (aiosmtpd) in plain, STARTTLS or implicit-TLS mode.

The HTTP receivers are pytest-httpserver's ``httpserver`` fixture; this module has what
that fixture does not.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import attrs
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from backupctl_core.domain.drill import DrillReport
from backupctl_core.domain.events import (
    Event,
    EventType,
    daily_summary_event,
    drill_event,
    failed_event,
    started_event,
    success_event,
    timeout_warning_event,
)
from backupctl_core.domain.records import RunRecord, RunStatus

BERLIN = ZoneInfo("Europe/Berlin")
MB = 1024 * 1024

# SPEC's "Backup Success" example, as the core renders it for ``sample_events()``.
SUCCESS_TEXT = (
    "✅ Backup completed — locaboo\n"
    "DB: locaboo_db | Dump: 245 MB | Encrypted: Yes | Verified: Yes\n"
    "Snapshot: a1b2c3d4 | Mode: combined\n"
    "New files: 12 | Changed: 3 | Added: 52 MB\n"
    "Pruned: 2 snapshots | Local cleaned: 1 file\n"
    "Duration: 3m 12s"
)


def sample_events() -> dict[EventType, Event]:
    """One event of each type, built by the core from run records and drill reports."""
    start = datetime(2026, 3, 18, 0, 0, 0, tzinfo=BERLIN)
    running = RunRecord(
        project_name="locaboo",
        started_at=start,
        snapshot_mode="combined",
        id="6f1d2c3b-0000-4000-8000-000000000001",
        current_stage="sync",
    )
    ok = RunRecord(
        project_name="locaboo",
        started_at=start,
        snapshot_mode="combined",
        id="6f1d2c3b-0000-4000-8000-000000000002",
        status=RunStatus.SUCCESS,
        dump_size_bytes=245 * MB,
        encrypted=True,
        verified=True,
        snapshot_id="a1b2c3d4",
        files_new=12,
        files_changed=3,
        bytes_added=52 * MB,
        prune_snapshots_removed=2,
        local_files_cleaned=1,
        duration_ms=192_000,
    )
    failed = RunRecord(
        project_name="project-y",
        started_at=start,
        snapshot_mode="combined",
        id="6f1d2c3b-0000-4000-8000-000000000003",
        status=RunStatus.FAILED,
        error_stage="sync",
        error_message="connection timeout to storage box",
        retry_count=3,
        duration_ms=342_000,
        dump_path=Path("/data/backups/project-y/backup_2026-03-18_000000.sql.gz"),
    )
    passed = DrillReport("locaboo", "a1b2c3d4", start, duration_ms=42_000, restored_bytes=12 * MB)
    passed.add("import", True, "into locaboo_db_drill_20260318000000")
    passed.add("rows", True, "5 table(s), 12543 row(s) as in the dump")
    broken = DrillReport("project-y", "b2c3d4e5", start, duration_ms=42_000, restored_bytes=MB)
    broken.add("import", True, "into project_y_drill_20260318000000")
    broken.add("rows", False, "table orders: 3001 row(s) in the dump, 3000 imported")
    return {
        EventType.STARTED: started_event(running, start),
        EventType.SUCCESS: success_event(ok, "locaboo_db", start + timedelta(seconds=192)),
        EventType.FAILED: failed_event(failed, 3, start + timedelta(seconds=342)),
        EventType.WARNING: timeout_warning_event(
            running, 35 * 60_000, 30, start + timedelta(minutes=35)
        ),
        EventType.DAILY_SUMMARY: daily_summary_event([ok, failed], start),
        EventType.DRILL_SUCCESS: drill_event(passed, start + timedelta(seconds=42)),
        EventType.DRILL_FAILED: drill_event(broken, start + timedelta(seconds=42)),
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def stalled_endpoint(httpserver: HTTPServer, path: str) -> Iterator[None]:
    """Make ``path`` answer only after the block ends, i.e. after the client gave up.

    On leaving, the handler is released and the request finished, so the late answer
    cannot leak into the next test's log (pytest-httpserver serves one request at a time).
    """
    release = threading.Event()

    def stall(_: Request) -> Response:
        release.wait(10)
        return Response("ok")

    httpserver.expect_request(path).respond_with_handler(stall)
    try:
        yield
    finally:
        release.set()
        deadline = time.monotonic() + 10
        while not httpserver.log and time.monotonic() < deadline:
            time.sleep(0.01)


@contextmanager
def hung_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


# --- SMTP ----------------------------------------------------------------------------------

SmtpMode = Literal["plain", "starttls", "tls"]


class RecordingHandler:
    """Accepts every message and keeps it."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        found = []
        for envelope in self.envelopes:
            content = envelope.content
            raw = content if isinstance(content, bytes) else str(content).encode()
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            found.append(cast(EmailMessage, parsed))
        return found


@attrs.define
class PasswordAuthenticator:
    """Accepts exactly one user and password; records successful logins."""

    user: str
    password: str
    logins: list[str] = attrs.field(factory=list)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == self.user.encode()
            and data.password == self.password.encode()
        )
        if ok:
            self.logins.append(self.user)
        return AuthResult(success=ok, handled=False)


@attrs.frozen
class ServerCertificate:
    """A throwaway CA (its PEM at ``ca_file``) and a server context for 127.0.0.1."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_certificate(folder: Path) -> ServerCertificate:
    ca = trustme.CA()
    ca_file = folder / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return ServerCertificate(ca_file, context)


@attrs.frozen
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler
    authenticator: PasswordAuthenticator | None


@contextmanager
def smtp_server(
    mode: SmtpMode,
    certificate: ServerCertificate | None = None,
    authenticator: PasswordAuthenticator | None = None,
) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1. ``starttls`` requires STARTTLS before anything
    else; ``tls`` is TLS from the first byte. With an ``authenticator``, mail is only
    accepted after a successful login."""
    if mode != "plain" and certificate is None:
        raise ValueError(f"{mode} needs a certificate")
    handler = RecordingHandler()
    options: dict[str, Any] = {
        "authenticator": authenticator,
        "auth_required": authenticator is not None,
        # AUTH only after STARTTLS in that mode; implicit TLS is TLS already.
        "auth_require_tls": mode == "starttls",
    }
    if mode == "starttls" and certificate is not None:
        options.update(tls_context=certificate.server_context, require_starttls=True)
    if mode == "tls" and certificate is not None:
        options.update(ssl_context=certificate.server_context)
    port = free_port()  # Controller(port=0) cannot start: pick a free port first
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler, authenticator)
    finally:
        controller.stop()
