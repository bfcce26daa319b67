"""Notifications end to end: the installed executable, the webhook plugin and a
real HTTP receiver; a dead receiver → fallback → ``recover`` delivers once;
``summary`` sends the daily summary of the audit store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


def backupctl(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    workspace.write_env(RESTIC_PASSWORD="notify-pw", NOTIFICATION_TYPE="webhook")
    assert backupctl(workspace, "db", "migrate").returncode == 0
    return workspace


def received(server: HTTPServer) -> list[dict[str, object]]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def test_a_run_posts_started_and_success(ws: Workspace, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook/secret-token", method="POST").respond_with_data("ok")
    ws.write_env(WEBHOOK_URL=httpserver.url_for("/hook/secret-token"))
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 0, result.stderr
    started, success = received(httpserver)
    assert started["event"] == "backup_started" and started["project"] == "shop"
    assert success["event"] == "backup_success"
    assert str(success["text"]).startswith("✅ Backup completed — shop\nDB: ")
    data = success["data"]
    assert isinstance(data, dict) and data["status"] == "success" and data["verified"] is True
    assert str(data["timestamp"]).endswith(("+01:00", "+02:00"))  # TIMEZONE's offset


def test_undelivered_events_are_replayed_once(ws: Workspace, httpserver: HTTPServer) -> None:
    url = httpserver.url_for("/hook/secret-token")
    ws.write_env(WEBHOOK_URL=url)
    httpserver.expect_request("/hook/secret-token").respond_with_data("down", status=500)
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 0  # a notification failure is never a backup failure
    assert "secret-token" not in result.stderr
    assert "webhook: HTTP 500" in result.stderr
    fallback = ws.base_dir / ".fallback-audit" / "fallback.jsonl"
    assert len(fallback.read_text().splitlines()) == 2
    assert "secret-token" not in fallback.read_text()

    httpserver.clear()
    httpserver.expect_request("/hook/secret-token").respond_with_data("ok")
    out = backupctl(ws, "recover").stdout
    assert "notifications: 2 delivered, 0 pending" in out
    assert [m["event"] for m in received(httpserver)] == ["backup_started", "backup_success"]
    assert "notifications: 0 delivered" in backupctl(ws, "recover").stdout
    assert len(received(httpserver)) == 2


def test_summary_sends_the_last_24_hours(ws: Workspace, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("ok")
    ws.write_env(WEBHOOK_URL=httpserver.url_for("/hook"))
    ws.write_config(
        [
            sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo"),
            sqlite_project("gone", ws.root / "missing.sqlite", ws.root / "repo"),
        ]
    )
    backupctl(ws, "run", "--all")
    httpserver.clear_log()
    result = backupctl(ws, "summary")
    assert result.returncode == 0 and "sent via webhook" in result.stdout
    (summary,) = received(httpserver)
    lines = str(summary["text"]).splitlines()
    assert summary["event"] == "daily_summary"
    assert lines[0].startswith("📊 Daily Backup Summary — 20")
    assert lines[1].startswith("✅ shop — ") and lines[2].startswith("❌ gone — FAILED — ")
    assert lines[3] == "Total: 1/2 successful | Next run: per project schedule"
    printed = backupctl(ws, "summary", "--print")
    assert printed.stdout.splitlines()[1:4] == lines[1:4]
    assert len(received(httpserver)) == 1  # --print sends nothing


def test_unknown_notifier_type_names_the_distribution(ws: Workspace) -> None:
    ws.write_env(NOTIFICATION_TYPE="pager")
    result = backupctl(ws, "config", "validate")
    assert result.returncode == 3
    assert "no installed plugin provides notification type 'pager'" in result.stderr


def test_hung_endpoint_does_not_hang_the_backup(ws: Workspace) -> None:
    """A receiver that never answers: the run still ends, within the plugin's timeout."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections, never answers
    try:
        ws.write_env(WEBHOOK_URL=f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
        started = time.monotonic()
        result = backupctl(ws, "run", "shop")
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert result.returncode == 0
    assert "timed out" in result.stderr
    assert elapsed < 60  # two events, each bounded by the plugin's timeout
