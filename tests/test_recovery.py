"""Fault injection on real processes and services: SIGKILL mid-run, the audit
PostgreSQL going away, then crash recovery. Nothing may be lost or stay locked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.drill import manifest_path
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.recovery import Recovery
from backupctl_core.runtime.runner import PAUSE_ENV, run_project
from backupctl_core.testing.pgcluster import PgCluster
from tests.support.recording_plugin import recorder
from tests.support.sqlite_demo import make_sqlite_db, sqlite_project
from tests.support.workspace import Workspace, recording_registry

BACKUPCTL = str(Path(sys.executable).with_name("backupctl"))


def backupctl(ws: Workspace, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKUPCTL, *ws.cli_args(), *args], capture_output=True, text=True, timeout=180,
        env={**os.environ, **env},
    )  # fmt: skip


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    recorder.reset()
    workspace = Workspace(tmp_path)
    workspace.write_env(RESTIC_PASSWORD="recovery-pw")
    make_sqlite_db(tmp_path / "shop.sqlite")
    workspace.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        hooks={"pre_backup": "true"})]
    )  # fmt: skip
    assert backupctl(workspace, "db", "migrate").returncode == 0
    return workspace


def rows(ws: Workspace) -> list[dict[str, object]]:
    result = backupctl(ws, "logs", "shop", "--json", "--last", "50")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


@pytest.mark.parametrize("stage", ["pre_hook", "dump", "verify", "sync", "prune", "cleanup"])
def test_sigkill_in_each_stage_is_recovered(ws: Workspace, tmp_path: Path, stage: str) -> None:
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "run", "shop"],
        env={**os.environ, PAUSE_ENV: stage, PAUSE_ENV + "_MARKER": str(marker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None, "the run ended before reaching the stage"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (row,) = rows(ws)
    assert row["status"] == "started" and row["current_stage"] == stage
    assert backupctl(ws, "run", "shop").returncode == 2  # the live run holds the lock
    process.send_signal(signal.SIGKILL)
    process.wait()

    result = backupctl(ws, "recover")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 interrupted run(s) marked failed" in result.stdout
    assert "1 stale lock(s) removed" in result.stdout
    assert "ok   repository unlock" in result.stdout or stage in ("pre_hook", "dump", "verify")
    (row,) = rows(ws)
    assert row["status"] == "failed" and row["error_stage"] == "crash_recovery"
    assert row["completed_at"] is not None
    assert not (ws.base_dir / "shop" / ".lock").exists()
    # its temp folder (restic's scratch, under the base dir, not /tmp) is gone
    assert not (ws.base_dir / ".tmp" / str(process.pid)).exists()
    # a dump the killed run left behind belongs to no successful run
    assert not list((ws.base_dir / "shop").glob("shop_backup_*"))

    again = backupctl(ws, "run", "shop")
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["status"] for r in rows(ws)] == ["success", "failed"]
    assert "0 interrupted run(s)" in backupctl(ws, "recover").stdout


def test_recovery_leaves_a_running_backup_alone(ws: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "run", "shop"],
        env={**os.environ, PAUSE_ENV: "sync", PAUSE_ENV + "_MARKER": str(marker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not marker.exists():
            time.sleep(0.05)
        result = backupctl(ws, "recover")
        assert "0 interrupted run(s) marked failed" in result.stdout
        assert "0 orphaned dump(s)" in result.stdout
        assert rows(ws)[0]["status"] == "started"
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def audit_pg(tmp_path: Path) -> Iterator[PgCluster]:
    """A PostgreSQL of this test's own, so stopping it disturbs no other test."""
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def use_pg_audit(ws: Workspace, pg: PgCluster) -> AuditStore:
    pg.create_database("audit")
    ws.write_env(
        AUDIT_DB_HOST=pg.host, AUDIT_DB_PORT=str(pg.port), AUDIT_DB_NAME="audit",
        AUDIT_DB_USER=pg.superuser, AUDIT_DB_PASSWORD=pg.superuser_password,
    )  # fmt: skip
    assert backupctl(ws, "db", "migrate").returncode == 0
    return AuditStore.open(ws.load().settings.audit_db)


def test_audit_db_down_before_the_run(ws: Workspace, audit_pg: PgCluster) -> None:
    store = use_pg_audit(ws, audit_pg)
    audit_pg.pause()
    result = backupctl(ws, "run", "shop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "this run is kept in the fallback file" in result.stderr
    fallback = FallbackLog(ws.load().settings.fallback_file)
    assert [e["op"] for e in fallback.entries("audit")] == ["start", "finish"]

    audit_pg.resume()
    assert "audit rows: 2 replayed, 0 pending" in backupctl(ws, "recover").stdout
    assert "audit rows: 0 replayed" in backupctl(ws, "recover").stdout
    (row,) = rows(ws)  # exactly once
    assert row["status"] == "success" and row["snapshot_id"]
    assert store.history("shop")[0].status.value == "success"


def test_audit_db_down_in_the_middle_of_a_run(ws: Workspace, audit_pg: PgCluster) -> None:
    store = use_pg_audit(ws, audit_pg)
    ws.write_config(
        [{"name": "app", "database": {"type": "recording", "name": "db"},
          "restic": {"repository_path": "/r", "password": "pw-123456"}}]
    )  # fmt: skip
    recorder.during["sync"] = lambda **_: audit_pg.pause()
    config = ws.load()
    outcome = run_project(config, config.project("app"), recording_registry(), store)
    assert outcome.ok
    audit_pg.resume()
    (row,) = store.history("app")
    assert row.status.value == "started"  # the finish never reached the database
    reports = Recovery(config, recording_registry(), store).run()
    assert reports[0].detail.startswith("audit rows: 1 replayed, 0 pending")
    (row,) = store.history("app")
    assert row.status.value == "success" and row.id == outcome.record.id
    Recovery(config, recording_registry(), store).run()
    assert len(store.history("app")) == 1


def test_service_starts_without_the_audit_db_and_catches_up(
    ws: Workspace, audit_pg: PgCluster
) -> None:
    from datetime import UTC, datetime, timedelta

    from backupctl_core.plugins import get_plugin_manager
    from backupctl_core.runtime.service import BackupService

    store = use_pg_audit(ws, audit_pg)
    ws.write_config(
        [sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo", cron="0 * * * *")]
    )
    audit_pg.pause()
    clock = [datetime(2026, 3, 18, 10, 30, tzinfo=UTC)]
    service = BackupService(ws.config_path, ws.env_path, get_plugin_manager(), now=lambda: clock[0])
    service.start_up()  # no exception: the service runs without its audit DB
    clock[0] += timedelta(minutes=30)
    service.tick()
    service.workers["shop"].join(120)
    fallback = FallbackLog(ws.load().settings.fallback_file)
    assert [e["op"] for e in fallback.entries("audit")] == ["start", "finish"]
    service.replay_pending()  # still down: nothing lost, nothing raised
    assert len(fallback.entries("audit")) == 2

    audit_pg.resume()
    service.replay_pending()
    assert fallback.entries("audit") == []
    (row,) = store.history("shop")
    assert row.status.value == "success"
    service.shutdown()


def test_a_failing_service_job_never_stops_the_service(ws: Workspace, audit_pg: PgCluster) -> None:
    """The daily summary firing while the audit DB is down used to escape the
    scheduler loop (the service stopped at the next tick)."""
    from datetime import UTC, datetime, timedelta

    from backupctl_core.runtime.service import SUMMARY_JOB, BackupService

    use_pg_audit(ws, audit_pg)
    ws.write_env(NOTIFICATION_TYPE="recording", DAILY_SUMMARY_CRON="0 * * * *")
    clock = [datetime(2026, 3, 18, 10, 30, tzinfo=UTC)]
    service = BackupService(ws.config_path, ws.env_path, recording_registry(), now=lambda: clock[0])
    service.start_up()
    audit_pg.pause()
    clock[0] += timedelta(minutes=30)  # 11:00: the summary is due, the audit DB is down
    service.tick()  # raised before: the exception ended serve_forever's loop
    status, body = service.route("/status")  # was a 500 with a traceback
    assert status == 503 and body["failed_check"] == "audit database"
    status, body = service.route("/health")
    assert status == 503 and body["status"] == "degraded"
    assert SUMMARY_JOB in body["failed_jobs"] and body["audit_db"]["status"] == "fail"
    assert SUMMARY_JOB in service.job_failures
    assert "audit database" in service.job_failures[SUMMARY_JOB]
    (warning,) = [e for e in recorder.events if e.type.value == "backup_warning"]
    assert warning.text.startswith(f"⚠️ backupctl job failed — {SUMMARY_JOB}")
    assert audit_pg.superuser_password not in warning.text

    audit_pg.resume()
    clock[0] += timedelta(hours=1)  # the next summary goes out, the failure is cleared
    service.tick()
    assert SUMMARY_JOB not in service.job_failures
    assert [e.type.value for e in recorder.events][-1] == "daily_summary"
    service.shutdown()


def test_recovery_removes_only_dumps_it_can_attribute_to_a_failed_run(
    ws: Workspace, audit_pg: PgCluster
) -> None:
    use_pg_audit(ws, audit_pg)
    shop = ws.base_dir / "shop"
    audit_pg.pause()  # a successful run recorded only in the fallback file
    assert backupctl(ws, "run", "shop").returncode == 0
    (fallback_only,) = shop.glob("shop_backup_*.gz")
    fallback_manifest = manifest_path(fallback_only)  # each dump has one beside it
    assert fallback_manifest.exists()
    audit_pg.resume()
    # A failed run's dump: the repository cannot be created below a regular file.
    (ws.root / "not-a-folder").write_text("x")
    ws.write_config(
        [sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "not-a-folder" / "repo")]
    )
    assert backupctl(ws, "run", "shop").returncode == 1
    (failed_dump,) = set(shop.glob("shop_backup_*.gz")) - {fallback_only}
    failed_manifest = manifest_path(failed_dump)
    assert failed_manifest.exists()
    # Files no run of ours made: the original tool's dump and an operator's file.
    original = shop / "shop_backup_20260301_020000.sql.gz"
    original.write_bytes(b"original tool's dump")
    notes = shop / "shop_backup_notes.txt"
    notes.write_text("keep me")
    ws.write_config([sqlite_project("shop", ws.root / "shop.sqlite", ws.root / "repo")])

    result = backupctl(ws, "recover")
    assert result.returncode == 0, result.stdout + result.stderr
    removed = sorted([failed_dump.name, failed_manifest.name])
    assert f"2 orphaned dump(s) removed: {', '.join(removed)}" in result.stdout, result.stdout
    assert "2 left (no failed run to attribute them to)" in result.stdout, result.stdout
    assert f"warn   kept {original}: not made by a failed run" in result.stdout
    assert f"warn   kept {notes}: not made by a failed run" in result.stdout
    assert fallback_only.exists() and original.exists() and notes.exists()
    assert fallback_manifest.exists()  # a successful run's, kept with its dump
    assert not failed_dump.exists() and not failed_manifest.exists()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_a_cli_run_cleanly(
    ws: Workspace, tmp_path: Path, sig: signal.Signals, code: int, httpserver: HTTPServer
) -> None:
    """restic (here behind a slow wrapper) is running when the signal arrives. It used
    to exit 143 at once with restic left running, the row `started`, no post-hook
    and no notification; Ctrl-C was retried as a restic failure."""
    shims = tmp_path / "bin"
    shims.mkdir()
    started = tmp_path / "restic-started"
    child_pid = tmp_path / "child.pid"
    real_restic = subprocess.run(["which", "restic"], capture_output=True, text=True).stdout
    (shims / "restic").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *backup*) sleep 60 & echo $! > {child_pid}; touch {started}; wait;; esac\n'
        f'exec {real_restic.strip()} "$@"\n'
    )
    (shims / "restic").chmod(0o755)
    post = tmp_path / "post.txt"
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    ws.write_env(NOTIFICATION_TYPE="webhook", WEBHOOK_URL=httpserver.url_for("/hook"))
    ws.write_config(
        [sqlite_project("shop", tmp_path / "shop.sqlite", tmp_path / "repo",
                        hooks={"post_backup": f"echo $BACKUPCTL_STATUS > {post}"})]
    )  # fmt: skip
    process = subprocess.Popen(
        [BACKUPCTL, *ws.cli_args(), "run", "shop"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == code, out + err
    assert "shop: FAILED at Sync (6/11) after " in out
    assert err.count(f"Sync failed: interrupted by {sig.name}") == 1, err
    assert "Traceback" not in err
    (row,) = rows(ws)
    assert row["status"] == "failed" and row["error_message"] == f"interrupted by {sig.name}"
    assert row["retry_count"] == 0  # an interrupted tool is never retried
    assert post.read_text().strip() == "failed"  # the post-hook ran
    events = [json.loads(request.get_data()) for request, _ in httpserver.log]
    assert [e["event"] for e in events] == ["backup_started", "backup_failed"]
    assert f"interrupted by {sig.name}" in events[1]["text"]  # the failure was notified
    orphan = int(child_pid.read_text())
    with pytest.raises(ProcessLookupError):  # no tool left running
        os.kill(orphan, 0)
    assert not (ws.base_dir / "shop" / ".lock").exists()


def _original_result(run_id: str, status: str, dump: Path | None, **extra: object) -> dict:  # type: ignore[type-arg]
    """A run result as the original TypeScript tool serialised it (camelCase)."""
    return {
        "runId": run_id, "projectName": "app", "status": status, "currentStage": "notify_result",
        "startedAt": "2026-03-18T00:00:00.000Z", "completedAt": "2026-03-18T00:03:12.000Z",
        "dumpResult": {"filePath": str(dump), "sizeBytes": 2048, "durationMs": 900} if dump
        else None,
        "syncResult": {"snapshotId": "a1b2c3d4", "filesNew": 3, "filesChanged": 1,
                       "bytesAdded": 4096, "durationMs": 1200},
        "pruneResult": {"snapshotsRemoved": 1, "spaceFreed": ""},
        "cleanupResult": {"filesRemoved": 2, "spaceFreed": 0},
        "encrypted": False, "verified": True, "backupType": "database",
        "snapshotMode": "combined", "errorStage": None, "errorMessage": None,
        "retryCount": 0, "durationMs": 192000, **extra,
    }  # fmt: skip


def test_the_original_tool_s_fallback_entries_are_replayed_once_or_kept(
    ws: Workspace, tmp_path: Path
) -> None:
    """They were neither replayed nor removed."""
    ws.write_env(NOTIFICATION_TYPE="recording")
    ws.write_config(
        [{"name": "app", "database": {"type": "recording", "name": "db"},
          "restic": {"repository_path": "/r", "password": "pw-123456"}}]
    )  # fmt: skip
    config = ws.load()
    dump = ws.base_dir / "app" / "app_backup_20260318_000000.dump"
    dump.parent.mkdir(parents=True)
    dump.write_text("the original's dump")
    run_id = "6f1d2c3b-0000-4000-8000-00000000beef"
    lines = [
        {"id": "o1", "type": "audit", "payload": _original_result(run_id, "success", dump),
         "timestamp": "2026-03-18T00:03:13.000Z"},
        {"id": "o2", "type": "audit", "payload": _original_result("dry-run", "success", None),
         "timestamp": "2026-03-18T00:04:00.000Z"},
        {"id": "o3", "type": "notification", "timestamp": "2026-03-18T00:03:14.000Z",
         "payload": {"notificationType": "failure", "projectName": "app",
                     "result": _original_result(run_id.replace("beef", "dead"), "failed", None,
                                                errorStage="sync", errorMessage="box gone")}},
    ]  # fmt: skip
    fallback = FallbackLog(config.settings.fallback_file)
    fallback.path.parent.mkdir(parents=True, exist_ok=True)
    fallback.path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = ws.store()

    reports = {r.step: r for r in Recovery(config, recording_registry(), store).run()}

    assert reports["replay fallback"].detail == (
        "audit rows: 1 replayed, 1 pending; notifications: 1 delivered, 0 pending"
    )
    (row,) = store.history("app")
    assert (row.id, row.status.value, row.snapshot_id, row.dump_path) == (
        run_id, "success", "a1b2c3d4", dump,
    )  # fmt: skip
    # its forget --prune removed a snapshot, so it pruned: the interval counts from it
    assert row.pruned_at == datetime(2026, 3, 18, 0, 3, 12, tzinfo=UTC)
    (event,) = recorder.events
    assert event.type.value == "backup_failed" and "Error: box gone" in event.text
    assert [e["id"] for e in fallback.entries()] == ["o2"]  # not a run: kept, reported
    assert dump.exists()  # a successful run's dump, now attributed
    Recovery(config, recording_registry(), store).run()
    assert len(store.history("app")) == 1 and len(recorder.events) == 1  # exactly once
