"""Heartbeat monitors end to end: real runs (the sqlite dumper, a local restic
repository) through the installed uptime-kuma and healthchecks plugins, against a
real HTTP receiver on 127.0.0.1; a receiver that is down or never answers leaves
the backup's result alone and holds it up no longer than the plugin's timeout."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backupctl_healthchecks import plugin as healthchecks
from backupctl_uptime_kuma import plugin as uptime_kuma
from pytest_httpserver import HTTPServer

from backupctl_core.domain.records import RunStatus
from backupctl_core.domain.stages import Stage
from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.runner import RunOutcome, run_project
from backupctl_core.testing.notify_servers import free_port, hung_listener
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
TOKEN = "kuma-push-tok-81"
UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
KUMA = {"type": "uptime-kuma", "config": {"push_token": TOKEN}}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="monitor-pw")
    make_sqlite_db(tmp_path / "shop.sqlite")
    return workspace


def configure(ws: Workspace, monitor: dict[str, object], db: str = "shop.sqlite") -> None:
    ws.write_config([sqlite_project("shop", ws.root / db, ws.root / "repo", monitor=monitor)])


def run(ws: Workspace) -> RunOutcome:
    config = ws.load()
    return run_project(config, config.project("shop"), get_plugin_manager(), ws.store())


def hc(url: str) -> dict[str, object]:
    return {"type": "healthchecks", "config": {"ping_url": url}}


def test_uptime_kuma_hears_up_after_a_successful_run(ws: Workspace, httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"/api/push/{TOKEN}", method="GET").respond_with_json({"ok": True})
    ws.write_env(UPTIME_KUMA_BASE_URL=httpserver.url_for("/"))
    configure(ws, KUMA)
    outcome = run(ws)
    assert outcome.ok, outcome.record.error_message
    [(request, _)] = httpserver.log  # nothing at the start: a push monitor knows up and down
    args = request.args.to_dict()
    assert set(args) == {"status", "msg", "ping"}
    assert args["status"] == "up"
    assert args["msg"].startswith("OK - ") and args["msg"].endswith("s")
    assert int(args["ping"]) == outcome.record.duration_ms > 0
    row = ws.store().history("shop", 1)[0]
    assert row.id == outcome.record.id and row.duration_ms == int(args["ping"])


def test_uptime_kuma_hears_down_with_the_stage_after_a_failed_run(
    ws: Workspace, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(f"/api/push/{TOKEN}").respond_with_json({"ok": True})
    ws.write_env(UPTIME_KUMA_BASE_URL=httpserver.url_for("/"))
    configure(ws, KUMA, db="missing.sqlite")
    outcome = run(ws)
    assert outcome.record.status is RunStatus.FAILED
    [(request, _)] = httpserver.log
    assert request.args["status"] == "down"
    assert request.args["msg"] == f"FAIL - Dump (3/11): {outcome.record.error_message}"[:200]
    assert int(request.args["ping"]) == outcome.record.duration_ms


def test_healthchecks_hears_start_then_success_with_the_run_id(
    ws: Workspace, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(f"/ping/{UUID}/start", method="POST").respond_with_data("OK")
    httpserver.expect_request(f"/ping/{UUID}", method="POST").respond_with_data("OK")
    configure(ws, hc(httpserver.url_for(f"/ping/{UUID}")))
    outcome = run(ws)
    assert outcome.ok
    start, end = (request for request, _ in httpserver.log)
    assert (start.path, end.path) == (f"/ping/{UUID}/start", f"/ping/{UUID}")
    assert start.args.to_dict() == end.args.to_dict() == {"rid": outcome.record.id}
    assert start.get_data() == b"started"
    assert end.get_data().decode().startswith("OK - ")


def test_healthchecks_hears_start_then_fail(ws: Workspace, httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"/ping/{UUID}/start").respond_with_data("OK")
    httpserver.expect_request(f"/ping/{UUID}/fail").respond_with_data("OK")
    configure(ws, hc(httpserver.url_for(f"/ping/{UUID}")), db="missing.sqlite")
    outcome = run(ws)
    assert outcome.record.status is RunStatus.FAILED
    paths = [request.path for request, _ in httpserver.log]
    assert paths == [f"/ping/{UUID}/start", f"/ping/{UUID}/fail"]
    (_, fail) = (request for request, _ in httpserver.log)
    assert fail.args["rid"] == outcome.record.id
    assert fail.get_data().decode().startswith("FAIL - Dump (3/11): ")


def test_a_monitor_that_is_down_changes_nothing_but_a_warning(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    configure(ws, hc(f"http://127.0.0.1:{free_port()}/ping/{UUID}"))
    with caplog.at_level(logging.WARNING):
        outcome = run(ws)
    assert outcome.ok and not outcome.connectivity_failure
    row = ws.store().history("shop", 1)[0]
    assert row.status is RunStatus.SUCCESS and row.error_message is None
    warnings = [r.getMessage() for r in caplog.records if "monitor" in r.getMessage()]
    assert warnings == [
        "shop: monitor start ping not delivered: healthchecks: connection refused",
        "shop: monitor success ping not delivered: healthchecks: connection refused",
    ]
    assert UUID not in caplog.text


@pytest.mark.parametrize("kind", ["uptime-kuma", "healthchecks"])
def test_a_monitor_that_never_answers_holds_the_run_only_for_its_timeout(
    kind: str, ws: Workspace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    timeout = 1.0
    for module in (uptime_kuma, healthchecks):
        monkeypatch.setattr(module, "READ_TIMEOUT", timeout)
    stamps: dict[Stage, float] = {}
    with hung_listener() as port:  # accepts the connection, never answers
        url = f"http://127.0.0.1:{port}"
        ws.write_env(UPTIME_KUMA_BASE_URL=url)
        configure(ws, KUMA if kind == "uptime-kuma" else hc(f"{url}/ping/{UUID}"))
        config = ws.load()
        with caplog.at_level(logging.WARNING):
            outcome = run_project(
                config, config.project("shop"), get_plugin_manager(), ws.store(),
                on_stage=lambda stage: stamps.setdefault(stage, time.monotonic()),
            )  # fmt: skip
        ended = time.monotonic()
    assert outcome.ok
    # the start ping is sent between "notify started" and the dump, the result ping
    # after "notify result"; each waits for the timeout, then the run goes on
    at_start = stamps[Stage.DUMP] - stamps[Stage.NOTIFY_STARTED]
    at_end = ended - stamps[Stage.NOTIFY_RESULT]
    assert timeout * 0.9 <= at_end < timeout + 1.5
    if kind == "healthchecks":
        assert timeout * 0.9 <= at_start < timeout + 1.5
    else:
        assert at_start < 0.5  # uptime-kuma sends nothing at the start
    timed_out = [r.getMessage() for r in caplog.records if "ping not delivered" in r.getMessage()]
    assert len(timed_out) == (1 if kind == "uptime-kuma" else 2)
    assert all(m.endswith(f"{kind}: timed out waiting for answer") for m in timed_out)


def test_the_cli_validates_and_runs_with_an_installed_monitor(
    ws: Workspace, httpserver: HTTPServer
) -> None:
    def backupctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=120,
            env={**os.environ},
        )  # fmt: skip

    configure(ws, KUMA)
    # no base URL: accepted as the original tool's example has it, with a warning
    # that no heartbeat is sent (a monitor never fails a backup)
    unpinged = backupctl("config", "validate")
    assert unpinged.returncode == 0, unpinged.stderr
    assert "warning:" in unpinged.stderr and "no heartbeat is sent" in unpinged.stderr
    assert "monitor.config.base_url is required: set UPTIME_KUMA_BASE_URL in .env" in (
        unpinged.stderr
    )
    assert TOKEN not in unpinged.stderr + unpinged.stdout

    httpserver.expect_request(f"/api/push/{TOKEN}").respond_with_json({"ok": True})
    ws.write_env(UPTIME_KUMA_BASE_URL=httpserver.url_for("/"))
    assert backupctl("config", "validate").returncode == 0
    shown = backupctl("config", "show", "shop")
    assert TOKEN not in shown.stdout and "push_token" in shown.stdout
    assert backupctl("db", "migrate").returncode == 0
    done = backupctl("run", "shop")
    assert done.returncode == 0, done.stderr
    [(request, _)] = httpserver.log
    assert request.args["status"] == "up"
    assert TOKEN not in done.stdout + done.stderr
