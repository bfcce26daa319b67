"""The service: cron schedules on a controlled clock, queued runs, waiting for
the lock, and the real ``backupctl serve`` process with its HTTP endpoints,
config reload (SIGHUP) and clean stop (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.lock import ServiceLock
from backupctl_core.runtime.scheduler import CronScheduler, ProjectWorker
from backupctl_core.runtime.service import BackupService
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))
UTC_10 = datetime(2026, 3, 18, 10, 0, 30, tzinfo=UTC)


def test_cron_is_evaluated_in_the_configured_zone() -> None:
    scheduler = CronScheduler("Europe/Berlin")
    scheduler.set_jobs({"nightly": ("0 2 * * *", lambda: None)}, UTC_10)
    # 02:00 in Berlin (CET, UTC+1) is 01:00 UTC
    assert scheduler.jobs["nightly"].next_at.astimezone(UTC) == datetime(
        2026, 3, 19, 1, 0, tzinfo=UTC
    )


def test_due_jobs_fire_once_and_move_on() -> None:
    fired: list[str] = []
    scheduler = CronScheduler("UTC")
    scheduler.set_jobs({"five": ("*/5 * * * *", lambda: fired.append("five"))}, UTC_10)
    assert scheduler.due(UTC_10 + timedelta(minutes=4)) == []
    assert scheduler.seconds_until_next(UTC_10) == 60.0  # capped
    assert scheduler.seconds_until_next(UTC_10 + timedelta(minutes=4, seconds=10)) == 20.0
    (job,) = scheduler.due(UTC_10 + timedelta(minutes=5))
    job.action()
    # asleep for 22 minutes: the missed ticks fire once, not four times
    assert len(scheduler.due(UTC_10 + timedelta(minutes=27))) == 1
    assert scheduler.jobs["five"].next_at == datetime(2026, 3, 18, 10, 30, tzinfo=UTC)
    assert fired == ["five"]


def test_a_trigger_during_a_run_queues_exactly_one_more() -> None:
    started = threading.Event()
    release = threading.Event()
    runs: list[int] = []

    def slow_run() -> None:
        runs.append(len(runs))
        started.set()
        release.wait(5)

    worker = ProjectWorker("p", slow_run)
    assert worker.trigger() == "started"
    assert started.wait(5)
    assert worker.trigger() == "queued behind the running backup"
    assert worker.trigger() == "already queued"
    release.set()
    deadline = time.monotonic() + 5
    while worker.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runs == [0, 1]  # queued, not skipped and not run twice


def test_a_crashing_run_does_not_kill_the_worker() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    worker = ProjectWorker("p", broken)
    worker.trigger()
    worker.join(5)
    assert worker.trigger() == "started"
    worker.join(5)
    assert calls == [1, 1]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="service-pw", DAILY_SUMMARY_CRON="0 8 * * *")
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", cron="*/10 * * * *")]
    )
    return workspace


def test_scheduled_run_waits_for_the_lock_then_runs(ws: Workspace) -> None:
    clock = [UTC_10]
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager(), now=lambda: clock[0])
    service.start_up()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time; from pathlib import Path;"
         "from backupctl_core.runtime.lock import ProjectLock;"
         f"lock = ProjectLock(Path({str(ws.base_dir / 'shop')!r}), 'shop'); lock.acquire();"
         "print('held', flush=True); time.sleep(2); lock.release()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    clock[0] = UTC_10 + timedelta(minutes=10)
    service.tick()
    assert service.workers["shop"].busy
    service.workers["shop"].join(60)
    holder.wait()
    (record,) = service.store.history("shop")
    assert record.status.value == "success"
    assert record.started_at >= clock[0]
    service.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_serve_http_reload_and_stop(ws: Workspace) -> None:
    port = free_port()
    ws.write_env(APP_PORT=str(port))
    service = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, health = get(port, "/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert service.poll() is None, service.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200 and health["status"] == "ok"
        assert health["audit_db"]["status"] == "pass" and "uptime_seconds" in health
        status, body = get(port, "/status")
        (shop,) = body["projects"]
        assert shop["name"] == "shop" and shop["last_run"] is None
        first_next = datetime.fromisoformat(shop["next_run"])
        assert first_next.minute % 10 == 0
        assert get(port, "/status/nope")[0] == 404
        assert get(port, "/status/shop")[1]["runs"] == []
        assert get(port, "/nothing")[0] == 404

        ws.write_config(
            [sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo", cron="7 3 * * *"),
             sqlite_project("new", ws.root / "shop.sqlite", ws.root / "repo2")]
        )  # fmt: skip
        reload = subprocess.run(
            [BACKUPCTL, *ws.cli_args(), "config", "reload"], capture_output=True, text=True
        )
        assert reload.returncode == 0, reload.stderr
        assert f"reload signal sent to the service (PID {service.pid})" in reload.stdout
        deadline = time.monotonic() + 10
        while len(get(port, "/status")[1]["projects"]) != 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        shop = get(port, "/status")[1]["projects"][0]
        assert datetime.fromisoformat(shop["next_run"]).strftime("%H:%M") == "03:07"

        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
        assert not (ws.base_dir / ".backupctl-serve.pid").exists()
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()


def reload_config(ws: Workspace) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), "config", "reload"], capture_output=True, text=True
    )


def test_config_reload_without_a_service_signals_nothing(ws: Workspace) -> None:
    result = reload_config(ws)
    assert result.returncode == 1
    assert "no running service found" in result.stderr
    # A PID file naming a live process that is no service: it used to get SIGHUP.
    planted = subprocess.Popen(["sleep", "60"])
    try:
        ws.base_dir.mkdir(parents=True, exist_ok=True)
        (ws.base_dir / ".backupctl-serve.pid").write_text(f"{planted.pid}\n")
        result = reload_config(ws)
        assert result.returncode == 1 and "no running service found" in result.stderr
        # Even holding the service lock, a process that is not `backupctl serve` is refused.
        lock = ServiceLock(ws.base_dir)
        lock.acquire()
        lock.path.write_text(f"{planted.pid} 2026-03-18T10:00:00+00:00\n")
        result = reload_config(ws)
        lock.release()
        assert result.returncode == 1
        assert f"PID {planted.pid} in {lock.path} is not a backupctl serve process" in (
            result.stderr
        )
        assert planted.poll() is None  # never signalled
    finally:
        planted.kill()
        planted.wait()


def test_one_service_per_backup_folder(ws: Workspace) -> None:
    first = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "serve", "--no-http"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid_path = ws.base_dir / ".backupctl-serve.pid"
    try:
        deadline = time.monotonic() + 60
        while not pid_path.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = subprocess.run(
            [BACKUPCTL, *ws.cli_args(), "serve", "--no-http"], capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        assert f"a backupctl service already runs on {ws.base_dir} (PID {first.pid} since" in (
            second.stderr
        )
        assert pid_path.read_text().split()[0] == str(first.pid)  # not overwritten
        reload = reload_config(ws)
        assert reload.returncode == 0, reload.stderr
        assert f"(PID {first.pid})" in reload.stdout
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_sigterm_during_a_scheduled_run_lets_it_finish(ws: Workspace) -> None:
    """Cron every minute; the run's pre-hook holds it ~4 s; SIGTERM arrives meanwhile."""
    port = free_port()
    ws.write_env(APP_PORT=str(port))
    ws.write_config(
        [sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo", cron="* * * * *",
                        hooks={"pre_backup": "sleep 4"})]
    )  # fmt: skip
    service = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # the next minute boundary, then the run starts
        while True:
            try:
                projects = get(port, "/status")[1]["projects"]
                if projects[0]["running"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert service.poll() is None, service.communicate()
            assert time.monotonic() < deadline, "the scheduled run never started"
            time.sleep(0.2)
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    logs = subprocess.run(
        [BACKUPCTL, *ws.cli_args(), "logs", "shop", "--json"], capture_output=True, text=True
    )
    (row,) = json.loads(logs.stdout)
    assert row["status"] == "success"  # finished, not cut off
    assert not (ws.base_dir / "shop" / ".lock").exists()


def test_health_runs_the_readiness_checks_at_most_once_a_minute(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/health runs `backupctl health`'s checks, but a scraper hitting it every second
    must not fork restic every time."""
    import shutil

    calls = tmp_path / "restic-calls"
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "restic").write_text(
        f'#!/bin/sh\necho "$1" >> {calls}\nexec {shutil.which("restic")} "$@"\n'
    )
    (shims / "restic").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager())
    service.start_up()
    try:
        calls.unlink(missing_ok=True)  # recovery's restic unlock
        for _ in range(5):
            status, body = service.health()
            assert status == 200 and body["status"] == "ok", body
        names = [check["name"] for check in body["checks"]]
        assert names == ["audit database", "disk space", "tools", "restic repository", "database"]
        assert calls.read_text().split() == ["version", "cat"]  # once, not five times
    finally:
        service.shutdown()


def test_drills_run_on_drill_cron_and_health_flags_an_overdue_one(
    ws: Workspace, tmp_path: Path
) -> None:
    """``drill.cron``: the service drills on its own worker and records the result;
    ``drill.max_age_days``: /health fails while no drill passed recently enough."""
    drill = {"cron": "30 11 * * *", "max_age_days": 7}  # 10:30 UTC in TIMEZONE (Berlin)
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo", cron="10 11 * * *",
                        drill=drill)]
    )  # fmt: skip
    clock = [UTC_10]
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager(), now=lambda: clock[0])
    service.start_up()
    try:
        assert "drill:shop" in service.scheduler.jobs
        status, body = service.health()
        assert status == 503
        (overdue,) = [c for c in body["checks"] if c["name"] == "restore drill"]
        assert overdue["status"] == "fail" and "no passed restore drill yet" in overdue["detail"]

        clock[0] = UTC_10 + timedelta(minutes=10)  # the backup at 10:10 UTC
        service.tick()
        service.workers["shop"].join(60)
        clock[0] = UTC_10 + timedelta(minutes=30)  # the drill at 10:30
        service.tick()
        service.workers["drill:shop"].join(120)
        (drilled,) = service.store.drill_history("shop")
        assert drilled.ok, drilled.error_message
        assert service.store.history("shop")[0].status.value == "success"  # still one run
        assert len(service.store.history("shop")) == 1

        clock[0] = datetime.now(UTC)  # the drill's own time is real: judge it from now
        status, body = service.health()
        (fresh,) = [c for c in body["checks"] if c["name"] == "restore drill"]
        assert fresh["status"] == "pass", fresh
        assert status == 200, body
    finally:
        service.shutdown()
