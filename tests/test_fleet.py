"""Fleet mode: several hosts, one PostgreSQL audit store (issue 18, docs/fleet.md).

The parts on the real PostgreSQL (advisory locks, tick claims, heartbeats, recovery
across hosts), then two real ``backupctl serve`` replicas, each with its own backup
folder, port and ``BACKUPCTL_HOSTNAME`` as on two hosts, on a per-minute schedule.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from backupctl_core.audit.fleet import Fleet, FleetLockHeld, Origin, advisory_key
from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.records import Replica, RunRecord, RunStatus
from backupctl_core.domain.settings import AuditDbSettings, Secret
from backupctl_core.plugins import get_plugin_manager
from backupctl_core.runtime.checks import fleet_check
from backupctl_core.runtime.recovery import Recovery
from backupctl_core.testing.fixtures_pg import PgDatabase
from backupctl_core.testing.notify_servers import free_port
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


def audit_settings(db: PgDatabase) -> AuditDbSettings:
    return AuditDbSettings(
        host=db.host, port=db.port, name=db.name, user=db.user, password=Secret(db.password)
    )


def audit_env(db: PgDatabase) -> dict[str, str]:
    return {"AUDIT_DB_HOST": db.host, "AUDIT_DB_PORT": str(db.port), "AUDIT_DB_NAME": db.name,
            "AUDIT_DB_USER": db.user, "AUDIT_DB_PASSWORD": db.password}  # fmt: skip


@pytest.fixture
def store(pg_scram_db: PgDatabase) -> Iterator[AuditStore]:
    opened = AuditStore.open(audit_settings(pg_scram_db))
    opened.migrate()
    yield opened
    opened.close()


def test_advisory_keys_are_stable_and_per_project() -> None:
    # Documented in docs/fleet.md: sha256("backupctl:project:<name>")[:8], signed.
    assert advisory_key("project", "shop") == int.from_bytes(
        bytes.fromhex("16fe531ce16d9f98"), "big", signed=True
    )
    assert advisory_key("project", "shop") != advisory_key("project", "blog")
    assert -(2**63) <= advisory_key("project", "shop") < 2**63


def test_a_second_host_is_refused_naming_the_first(pg_scram_db: PgDatabase) -> None:
    settings = audit_settings(pg_scram_db)
    host_a = Fleet(settings, Origin("host-a", 4242))
    host_b = Fleet(settings, Origin("host-b", 5151))
    with host_a.run_lock("shop"):
        assert host_b.is_held("shop")
        with pytest.raises(
            FleetLockHeld, match=r"'shop' already in progress on host-a \(pid 4242,"
        ):
            host_b.run_lock("shop").acquire()
        with host_b.run_lock("blog"):  # another project is free
            pass
        holder = host_b.holder("shop")
        assert holder is not None and holder.hostname == "host-a" and holder.pid == 4242
    assert not host_b.is_held("shop")
    with host_b.run_lock("shop"):
        assert host_a.is_held("shop")


def test_an_unreachable_store_leaves_the_local_lock_alone(pg_scram_db: PgDatabase) -> None:
    settings = AuditDbSettings(host="127.0.0.1", port=free_port(), name="x", user="x")
    lock = Fleet(settings, Origin("host-a", 1)).run_lock("shop")
    assert lock.acquire() is False  # the run goes on under its local lock
    lock.release()


def test_each_tick_is_claimed_once(store: AuditStore, pg_scram_db: PgDatabase) -> None:
    other = AuditStore.open(audit_settings(pg_scram_db))
    tick = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    assert store.claim_tick("project:shop", tick, "host-a", 1) is True
    assert other.claim_tick("project:shop", tick, "host-b", 2) is False
    assert store.claim_tick("project:shop", tick, "host-a", 1) is False
    assert other.claim_tick("project:shop", tick + timedelta(minutes=1), "host-b", 2) is True
    assert other.claim_tick("daily-summary", tick, "host-b", 2) is True
    assert store.forget_claims(tick + timedelta(seconds=1)) == 2
    assert store.claim_tick("project:shop", tick, "host-a", 1) is True
    other.close()


def started_row(store: AuditStore, project: str, host: str, pid: int) -> RunRecord:
    record = RunRecord(project_name=project, started_at=datetime.now(UTC),
                       snapshot_mode="combined", hostname=host, pid=pid)  # fmt: skip
    record.current_stage = "sync"
    store.start_run(record)
    return record


def fleet_workspace(root: Path, db: PgDatabase, host: str) -> Workspace:
    ws = Workspace(root)
    ws.write_env(RESTIC_PASSWORD="fleet-pw", BACKUPCTL_HOSTNAME=host, **audit_env(db))
    return ws


def test_recovery_marks_another_hosts_run_only_once_its_lock_is_free(
    tmp_path: Path, store: AuditStore, pg_scram_db: PgDatabase
) -> None:
    ws = fleet_workspace(tmp_path, pg_scram_db, "host-b")
    ws.write_config([sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo")])
    host_a = Fleet(audit_settings(pg_scram_db), Origin("host-a", 4242))
    recovery = Recovery(ws.load(), get_plugin_manager(), store)
    host_b = Fleet(audit_settings(pg_scram_db), Origin("host-b", os.getpid()))
    with host_a.run_lock("shop"):
        live = started_row(store, "shop", "host-a", 4242)
        assert recovery.other_hosts_orphans(host_b) == ""
        assert recovery.orphaned_rows() == "0 interrupted run(s) marked failed"
        row = store.get(live.id)
        assert row is not None and row.status is RunStatus.STARTED  # a live run: never
    # host-a died: its connection closed, the lock is free
    marked = recovery.other_hosts_orphans(host_b)
    assert marked == f"1 interrupted run(s) marked failed: shop run {live.id} of host-a"
    row = store.get(live.id)
    assert row is not None and row.status is RunStatus.FAILED
    assert row.error_stage == "crash_recovery"
    assert row.error_message == "the process ended during sync on host-a (pid 4242)"
    # This host's own runs are left to its start-up recovery (local lock, local files).
    own = started_row(store, "shop", "host-b", 999999)
    assert recovery.other_hosts_orphans(host_b) == ""
    assert recovery.orphaned_rows() == "1 interrupted run(s) marked failed"
    row = store.get(own.id)
    assert row is not None and row.status is RunStatus.FAILED


def test_recovery_never_overwrites_a_run_that_finished_meanwhile(store: AuditStore) -> None:
    record = started_row(store, "shop", "host-a", 1)
    finished = store.get(record.id)
    assert finished is not None
    finished.status, finished.completed_at = RunStatus.SUCCESS, datetime.now(UTC)
    store.finish_run(finished)
    stale = RunRecord(**{**record.to_json(), "status": RunStatus.FAILED,
                         "started_at": record.started_at})  # fmt: skip
    assert store.finish_if_started(stale) is False
    row = store.get(record.id)
    assert row is not None and row.status is RunStatus.SUCCESS


def test_health_names_the_replicas_and_what_each_ran_last(
    tmp_path: Path, store: AuditStore, pg_scram_db: PgDatabase
) -> None:
    ws = fleet_workspace(tmp_path, pg_scram_db, "host-a")
    ws.write_config(
        [sqlite_project(name, tmp_path / "x.sqlite", tmp_path / name) for name in ("a", "b")]
    )
    now = datetime.now(UTC)
    store.heartbeat(Replica("host-a", 11, "/data/a", now - timedelta(hours=1), now))
    store.heartbeat(Replica("host-b", 22, "/data/b", now - timedelta(hours=1), now))
    store.heartbeat(Replica("host-b", 22, "/data/b", now - timedelta(hours=1), now))  # update
    store.heartbeat(Replica("gone", 33, "/data/c", now, now - timedelta(minutes=30)))
    for project, host in (("a", "host-a"), ("b", "host-b")):
        record = started_row(store, project, host, 1)
        record.status, record.completed_at = RunStatus.SUCCESS, now
        store.finish_run(record)
    check = fleet_check(ws.load(), store, now + timedelta(seconds=3))
    assert check is not None and check.status == "pass"
    assert check.detail == (
        "2 replica(s) seen in the last 5 min:"
        " host-a (pid 11, seen 3 s ago; last ran: a); host-b (pid 22, seen 3 s ago; last ran: b)"
    )
    status = subprocess.run([BACKUPCTL, *ws.cli_args(), "status", "--host", "host-b"],
                            capture_output=True, text=True)  # fmt: skip
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[-1] == "HOST"
    assert lines[1].split()[:2] == ["a", "never"]  # a's runs were on host-a
    assert lines[2].split()[:2] == ["b", "success"] and "host-b (1)" in lines[2]
    health = subprocess.run([BACKUPCTL, *ws.cli_args(), "health", "--json"],
                            capture_output=True, text=True)  # fmt: skip
    (fleet,) = [c for c in json.loads(health.stdout)["checks"] if c["name"] == "fleet"]
    assert fleet["status"] == "pass" and "host-b (pid 22" in fleet["detail"]


# -- two real replicas ------------------------------------------------------


def start_replica(ws: Workspace, port: int) -> subprocess.Popen[str]:
    ws.write_env(APP_PORT=str(port))
    return subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "serve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def wait_healthy(port: int, service: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert service.poll() is None, service.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"replica on port {port} did not start")


def runs(store: AuditStore, project: str) -> list[RunRecord]:
    return sorted(store.history(project, 100), key=lambda r: r.started_at)


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.e2e
def test_two_replicas_run_each_tick_once_and_take_over_a_dead_one(
    tmp_path: Path, pg_scram_db: PgDatabase, httpserver: HTTPServer
) -> None:
    """Per-minute schedules on two replicas: one run per project per minute, one daily
    summary per tick, a CLI run on the other host refused naming the holder, and a
    replica SIGKILLed mid-run: the survivor marks that run interrupted and runs the
    next tick. A live run is never marked (the slow run spans the survivor's sweeps)."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    db = make_sqlite_db(tmp_path / "shop.sqlite", rows=50)
    every_minute = "* * * * *"
    projects = [
        sqlite_project("alpha", db, tmp_path / "repo-alpha", cron=every_minute),
        sqlite_project("slow", db, tmp_path / "repo-slow", cron=every_minute,
                       hooks={"pre_backup": "sleep 40"}),
    ]  # fmt: skip
    replicas: dict[str, tuple[Workspace, int]] = {}
    for host in ("host-a", "host-b"):
        ws = fleet_workspace(tmp_path / host, pg_scram_db, host)
        ws.write_env(NOTIFICATION_TYPE="webhook", WEBHOOK_URL=httpserver.url_for("/hook"),
                     DAILY_SUMMARY_CRON=every_minute)  # fmt: skip
        ws.write_config(projects)
        replicas[host] = (ws, free_port())
    store = replicas["host-a"][0].store()  # migrated once, before both start
    # Start well before a minute boundary, so both replicas schedule the same first tick.
    if datetime.now(UTC).second > 50:
        time.sleep(62 - datetime.now(UTC).second)
    first_tick = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    services = {host: start_replica(ws, port) for host, (ws, port) in replicas.items()}
    try:
        for host, service in services.items():
            wait_healthy(replicas[host][1], service)
        wait_for(lambda: len(runs(store, "slow")) == 1, 90, "the first tick's runs")
        (slow,) = runs(store, "slow")
        owner = slow.hostname
        assert owner in services and slow.pid == services[owner].pid
        other = "host-b" if owner == "host-a" else "host-a"
        # A CLI run on the other host while the owner runs: exit 2, naming the owner.
        refused = subprocess.run([BACKUPCTL, *replicas[other][0].cli_args(), "run", "slow"],
                                 capture_output=True, text=True)  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"backup of 'slow' already in progress on {owner} (pid {slow.pid}," in (
            refused.stderr
        )
        wait_for(lambda: len(runs(store, "alpha")) == 1 and runs(store, "alpha")[0].completed_at,
                 60, "alpha's first run")  # fmt: skip
        # The survivor swept (every 15 s) while slow ran: a live run is never marked.
        time.sleep(16)
        (slow,) = runs(store, "slow")
        assert slow.status is RunStatus.STARTED
        os.killpg(services[owner].pid, signal.SIGKILL)  # the replica and its hook
        services[owner].wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: runs(store, "slow")[0].status is RunStatus.FAILED, 40,
                 "the survivor to mark the dead replica's run")  # fmt: skip
        assert time.monotonic() - killed_at <= 35
        marked = runs(store, "slow")[0]
        assert marked.error_stage == "crash_recovery"
        assert f"on {owner} (pid {slow.pid})" in (marked.error_message or "")
        second_tick = first_tick + timedelta(minutes=1)
        wait_for(lambda: len(runs(store, "slow")) == 2 and len(runs(store, "alpha")) == 2
                 and runs(store, "alpha")[1].completed_at, 100, "the second tick")  # fmt: skip
        for project in ("alpha", "slow"):
            first, second = runs(store, project)
            assert first.started_at >= first_tick and second.started_at >= second_tick
            assert second.started_at < second_tick + timedelta(minutes=1)
            assert second.hostname == other  # the survivor took over
        assert runs(store, "alpha")[0].status is RunStatus.SUCCESS
        wait_for(lambda: len([1 for r, _ in httpserver.log
                              if json.loads(r.get_data())["event"] == "daily_summary"]) >= 2,
                 30, "the second tick's summary")  # fmt: skip
        summaries = [
            json.loads(request.get_data())
            for request, _ in httpserver.log
            if json.loads(request.get_data())["event"] == "daily_summary"
        ]
        assert len(summaries) == 2  # one per tick across the fleet, not one per replica
        claims = store.database.execute_sql(
            "SELECT job, count(*) FROM fleet_claim GROUP BY job ORDER BY job"
        ).fetchall()
        assert claims == [("daily-summary", 2), ("project:alpha", 2), ("project:slow", 2)]
    finally:
        for service in services.values():
            if service.poll() is None:
                os.killpg(service.pid, signal.SIGKILL)
                service.wait()
        store.close()
