"""The audit store on both backends: SQLite file and PostgreSQL (psycopg 3,
password auth), migrations explicit and versioned."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.errors import BackupctlError, ConnectivityError
from backupctl_core.domain.prune import PruneHistory
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.settings import AuditDbSettings, Secret
from backupctl_core.domain.stages import Stage

MIGRATIONS = [
    "0001_initial", "0002_dump_file", "0003_warning_message", "0004_metrics_index",
    "0005_prune_time", "0006_drills", "0007_fleet",
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> AuditDbSettings:
    if request.param == "sqlite":
        return AuditDbSettings(sqlite_path=tmp_path / "audit" / "audit.db")
    db = request.getfixturevalue("pg_scram_db")
    return AuditDbSettings(
        host=db.host, port=db.port, name=db.name, user=db.user, password=Secret(db.password)
    )


@pytest.fixture
def store(settings: AuditDbSettings) -> Iterator[AuditStore]:
    opened = AuditStore.open(settings)
    opened.migrate()
    yield opened
    opened.close()


def test_nothing_is_created_before_migrate(settings: AuditDbSettings) -> None:
    store = AuditStore.open(settings)
    with pytest.raises(
        BackupctlError,
        match=r"not migrated \(pending: 0001_initial, 0002_dump_file, 0003_warning_message,"
        r" 0004_metrics_index, 0005_prune_time, 0006_drills, 0007_fleet\)",
    ):
        store.ensure_migrated()
    if settings.sqlite_path is not None:
        assert not settings.sqlite_path.exists()
    assert store.migrate() == MIGRATIONS
    assert store.migrate() == []
    store.ensure_migrated()
    status = store.migration_status()
    assert [name for name, _ in status] == MIGRATIONS
    assert all(applied is not None for _, applied in status)
    columns = {c.name for c in store.database.get_columns("backup_log")}
    assert columns == {
        "id", "project_name", "status", "current_stage", "started_at", "completed_at",
        "dump_size_bytes", "encrypted", "verified", "snapshot_id", "snapshot_mode", "files_new",
        "files_changed", "bytes_added", "prune_snapshots_removed", "local_files_cleaned",
        "error_stage", "error_message", "retry_count", "duration_ms", "created_at",
        "dump_file",  # 0002: a backupctl extension
        "warning_message",  # 0003: a backupctl extension
        "pruned_at", "prune_deferred_until",  # 0005: backupctl extensions
        "manifest_file",  # 0006: a backupctl extension
        "hostname", "pid",  # 0007: which replica ran it (fleet mode)
    }  # fmt: skip
    assert store.database.table_exists("drill_log")  # 0006: drills never in backup_log
    assert store.database.table_exists("fleet_claim")  # 0007
    assert store.database.table_exists("fleet_replica")  # 0007
    store.close()


def test_start_progress_finish(store: AuditStore) -> None:
    started = datetime(2026, 3, 18, 0, 0, 5, tzinfo=UTC)
    record = RunRecord(project_name="locaboo", started_at=started, snapshot_mode="combined")
    store.start_run(record)
    row = store.get(record.id)
    assert row is not None and row.status is RunStatus.STARTED and row.completed_at is None
    store.track_progress(record.id, Stage.SYNC)
    assert store.history("locaboo")[0].current_stage == "sync"

    record.status = RunStatus.SUCCESS
    record.completed_at = started + timedelta(minutes=3, seconds=12)
    record.duration_ms = 192000
    record.dump_size_bytes = 257949696
    record.snapshot_id = "a1b2c3d4"
    record.files_new, record.files_changed, record.bytes_added = 12, 3, 52 * 1024 * 1024
    record.prune_snapshots_removed, record.local_files_cleaned = 2, 1
    record.prune_deferred_until = started + timedelta(days=6, hours=1)
    record.verified = True
    store.finish_run(record)
    row = store.get(record.id)
    assert row == record  # every field round-trips, times as aware UTC
    assert row is not None and row.started_at == started


def test_history_latest_and_failed_filter(store: AuditStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for day in range(5):
        for project in ("a", "b"):
            record = RunRecord(project_name=project, started_at=base + timedelta(days=day),
                               snapshot_mode="combined")  # fmt: skip
            store.start_run(record)
            record.status = RunStatus.FAILED if day % 2 else RunStatus.SUCCESS
            record.error_stage = "sync" if day % 2 else None
            store.finish_run(record)
    history = store.history("a", last=3)
    assert [r.started_at.day for r in history] == [5, 4, 3]
    assert [r.started_at.day for r in store.history("a", failed_only=True)] == [4, 2]
    latest = store.latest_per_project(["b", "a", "never-ran"])
    assert set(latest) == {"a", "b"}
    assert latest["a"].started_at == base + timedelta(days=4)
    assert latest["b"].started_at == base + timedelta(days=4)
    assert latest["a"].id != latest["b"].id


def test_newest_run_per_status_and_counts_per_status(store: AuditStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SUCCESS, RunStatus.FAILED,
                RunStatus.SUCCESS, RunStatus.STARTED]  # fmt: skip
    ids = []
    for day, status in enumerate(statuses):
        record = RunRecord(project_name="a", started_at=base + timedelta(days=day),
                           snapshot_mode="combined", dump_size_bytes=100 + day)  # fmt: skip
        store.start_run(record)
        if status is not RunStatus.STARTED:
            record.status = status
            record.completed_at = record.started_at + timedelta(minutes=5)
            store.finish_run(record)
        ids.append(record.id)
    other = RunRecord(project_name="b", started_at=base + timedelta(days=9), snapshot_mode="x")
    store.start_run(other)
    finished = [RunStatus.SUCCESS, RunStatus.FAILED]

    latest = store.latest_by_status(["a", "b", "never-ran"], finished)
    assert set(latest) == {"a"}  # b has only a started run
    assert latest["a"][RunStatus.SUCCESS].id == ids[4]
    assert latest["a"][RunStatus.SUCCESS].dump_size_bytes == 104
    assert latest["a"][RunStatus.FAILED].id == ids[3]
    assert latest["a"][RunStatus.FAILED].completed_at == base + timedelta(days=3, minutes=5)
    assert store.status_counts(["a", "b", "never-ran"]) == {
        "a": {RunStatus.SUCCESS: 3, RunStatus.FAILED: 2, RunStatus.STARTED: 1},
        "b": {RunStatus.STARTED: 1},
        "never-ran": {},
    }


def _run(store: AuditStore, project: str, day: int, removed: int = 0, **fields: object) -> None:
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
    record = RunRecord(project_name=project, started_at=started, snapshot_mode="combined",
                       status=RunStatus.SUCCESS, prune_snapshots_removed=removed, **fields)  # type: ignore[arg-type]  # fmt: skip
    store.finish_run(record)


def test_prune_history_the_newest_run_that_pruned_and_whether_space_waits(
    store: AuditStore,
) -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert store.prune_history("a") == PruneHistory(last_pruned_at=None, unreclaimed=False)
    _run(store, "a", 0)  # nothing forgotten
    assert store.prune_history("a") == PruneHistory(None, unreclaimed=False)
    _run(store, "a", 1, removed=2)  # forgotten, not pruned: its space waits
    assert store.prune_history("a") == PruneHistory(None, unreclaimed=True)
    pruned = day + timedelta(days=2, minutes=3)
    _run(store, "a", 2, removed=1, pruned_at=pruned)
    _run(store, "b", 3, removed=1, pruned_at=day + timedelta(days=3))  # another project
    assert store.prune_history("a") == PruneHistory(pruned, unreclaimed=False)
    _run(store, "a", 3, removed=0)
    _run(store, "a", 4, removed=1, prune_deferred_until=pruned + timedelta(days=7))
    assert store.prune_history("a") == PruneHistory(pruned, unreclaimed=True)


def test_migration_0005_counts_earlier_runs_that_forgot_snapshots_as_prunes(
    settings: AuditDbSettings,
) -> None:
    """Before it, a run pruned whenever its forget removed something (the original
    tool: ``forget --prune``): the interval counts from the newest such run."""
    store = AuditStore.open(settings)
    store.migrate()
    store._runner().down()  # 0007 (fleet) goes,
    store._runner().down()  # 0006 (drills),
    store._runner().down()  # then 0005: back to 0004, the columns go
    assert "pruned_at" not in {c.name for c in store.database.get_columns("backup_log")}
    for day, removed in ((1, 3), (2, 0), (3, None)):
        store.database.execute_sql(
            "INSERT INTO backup_log (id, project_name, status, started_at, completed_at,"
            " prune_snapshots_removed, encrypted, verified, retry_count, created_at)"
            " VALUES (%s, 'a', 'success', %s, %s, %s, false, false, 0, %s)"
            .replace("%s", store.database.param),
            (str(uuid.uuid4()), datetime(2026, 1, day), datetime(2026, 1, day, 0, 5), removed,
             datetime(2026, 1, day)),
        )  # fmt: skip
    assert store.migrate() == ["0005_prune_time", "0006_drills", "0007_fleet"]
    assert store.prune_history("a") == PruneHistory(datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    store.close()


def test_the_metrics_queries_read_the_project_status_index(tmp_path: Path) -> None:
    """SQLite's plan for the statements the store runs: a seek for the newest run of a
    status, a count from the index alone (not every row of the project)."""
    store = AuditStore.open(AuditDbSettings(sqlite_path=tmp_path / "audit.db"))
    store.migrate()
    statements: list[str] = []
    store.database.connection().set_trace_callback(statements.append)
    store.latest_by_status(["a"], [RunStatus.SUCCESS])
    store.status_counts(["a"])
    store.database.connection().set_trace_callback(None)
    (newest,) = [s for s in statements if "LIMIT" in s]
    (count,) = [s for s in statements if "COUNT" in s]
    plans = {
        name: " ".join(row[3] for row in store.database.execute_sql(f"EXPLAIN QUERY PLAN {sql}"))
        for name, sql in (("newest", newest), ("count", count))
    }
    index = "backup_log_project_status_started"
    assert f"USING INDEX {index} (project_name=? AND status=?)" in plans["newest"]
    assert "TEMP B-TREE" not in plans["newest"]
    assert f"USING COVERING INDEX {index} (project_name=?)" in plans["count"]
    assert "TEMP B-TREE" not in plans["count"]
    store.close()


def test_the_prune_history_queries_seek_on_indexes(tmp_path: Path) -> None:
    """Once per run: the last prune is one seek, the runs since it a range, whatever
    the history (SQLite's plans)."""
    store = AuditStore.open(AuditDbSettings(sqlite_path=tmp_path / "audit.db"))
    store.migrate()
    _run(store, "a", 1, removed=1, pruned_at=datetime(2026, 1, 2, tzinfo=UTC))
    statements: list[str] = []
    store.database.connection().set_trace_callback(statements.append)
    store.prune_history("a")
    store.database.connection().set_trace_callback(None)
    last, since = (s for s in statements if s.startswith("SELECT"))
    plans = [
        " ".join(row[3] for row in store.database.execute_sql(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in (last, since)
    ]
    assert "USING COVERING INDEX backup_log_project_pruned (project_name=?)" in plans[0]
    assert "(project_name=? AND status=? AND started_at>?)" in plans[1]
    assert "SCAN t1" not in " ".join(plans)
    store.close()


def test_unreachable_postgres_is_a_connectivity_error() -> None:
    store = AuditStore.open(AuditDbSettings(host="127.0.0.1", port=1, name="x", user="x"))
    with pytest.raises(ConnectivityError, match=r"audit database PostgreSQL x@127\.0\.0\.1:1/x"):
        store.ensure_migrated()


def test_wrong_postgres_password_fails_without_echoing_it(pg_scram_db) -> None:  # type: ignore[no-untyped-def]
    settings = AuditDbSettings(
        host=pg_scram_db.host, port=pg_scram_db.port, name=pg_scram_db.name,
        user=pg_scram_db.user, password=Secret("definitely-wrong"),
    )  # fmt: skip
    with pytest.raises(ConnectivityError) as caught:
        AuditStore.open(settings).migrate()
    assert "password authentication failed" in caught.value.message
    assert "definitely-wrong" not in caught.value.message


# A fresh interpreter: the test process itself has psycopg loaded by the fixtures.
_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from datetime import UTC, datetime
from backupctl_core.audit.store import AuditStore
from backupctl_core.domain.records import RunRecord
from backupctl_core.domain.settings import AuditDbSettings, Secret

def record(project):
    return RunRecord(project_name=project, started_at=datetime.now(UTC), snapshot_mode="combined")

host, port, name, user, password, sqlite_path = sys.argv[1:]
out = {}
lite = AuditStore.open(AuditDbSettings(sqlite_path=Path(sqlite_path)))
lite.migrate()
lite.start_run(record("lite"))
out["sqlite_rows"] = len(lite.history("lite"))
out["psycopg_after_sqlite"] = "psycopg" in sys.modules
pg = AuditStore.open(AuditDbSettings(
    host=host, port=int(port), name=name, user=user, password=Secret(password)))
out["migrated"] = pg.migrate()
pg.start_run(record("pg"))
with pg.database.atomic():
    pg.start_run(record("pg"))
out["pg_rows"] = len(pg.history("pg"))
out["psycopg_after_postgres"] = "psycopg" in sys.modules
print(json.dumps(out))
"""


def test_sqlite_never_loads_psycopg_and_postgres_still_works_after(  # type: ignore[no-untyped-def]
    pg_scram_db, tmp_path: Path
) -> None:
    db = pg_scram_db
    argv = [db.host, str(db.port), db.name, db.user, db.password, str(tmp_path / "a.db")]
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "sqlite_rows": 1,
        "psycopg_after_sqlite": False,
        "migrated": MIGRATIONS,
        "pg_rows": 2,
        "psycopg_after_postgres": True,
    }


def test_postgres_driver_connects_by_url_streams_and_binds_binary(pg_scram_db) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    from backupctl_core.audit.postgres_driver import LazyPsycopg3Adapter, PostgresDatabase

    db = pg_scram_db
    url = f"postgresql://{db.user}:{db.password}@{db.host}:{db.port}/{db.name}"
    database = PostgresDatabase(url, encoding="UTF8")
    try:
        assert database.execute_sql("SHOW client_encoding").fetchone() == ("UTF8",)
        adapter = database._adapter
        assert isinstance(adapter, LazyPsycopg3Adapter)
        assert adapter.get_binary_type() is psycopg.Binary
        adapter.check_driver()
        connection = database.connection()
        with database.atomic():  # in a transaction: a plain named cursor
            cursor = adapter.server_side_cursor(connection)
            cursor.execute("SELECT generate_series(1, 5)")
            assert [row[0] for row in cursor.fetchall()] == [1, 2, 3, 4, 5]
            cursor.close()
        cursor = adapter.server_side_cursor(connection)  # outside: WITH HOLD
        cursor.execute("SELECT 42")
        assert cursor.fetchone() == (42,)
        cursor.close()
    finally:
        database.close()


# The original TypeScript backupctl's table as its two TypeORM migrations make it
# (CreateBackupLogTable, then AddBackupTypeToBackupLog), and rows as it writes them.
ORIGINAL_BACKUP_LOG = """
CREATE TABLE backup_log (
  id uuid PRIMARY KEY,
  project_name varchar NOT NULL,
  status varchar NOT NULL,
  current_stage varchar,
  started_at timestamptz NOT NULL,
  completed_at timestamptz,
  dump_size_bytes bigint,
  encrypted boolean NOT NULL DEFAULT false,
  verified boolean NOT NULL DEFAULT false,
  snapshot_id varchar,
  snapshot_mode varchar,
  files_new integer,
  files_changed integer,
  bytes_added bigint,
  prune_snapshots_removed integer,
  local_files_cleaned integer,
  error_stage varchar,
  error_message text,
  retry_count integer NOT NULL DEFAULT 0,
  duration_ms bigint,
  created_at timestamptz NOT NULL DEFAULT now(),
  backup_type varchar
);
CREATE TABLE migrations (id SERIAL PRIMARY KEY, timestamp bigint NOT NULL, name varchar NOT NULL);
INSERT INTO migrations (timestamp, name)
  VALUES (1742467200000, 'AddBackupTypeToBackupLog1742467200000');
INSERT INTO backup_log (id, project_name, status, current_stage, started_at, completed_at,
  dump_size_bytes, encrypted, verified, snapshot_id, snapshot_mode, files_new, files_changed,
  bytes_added, duration_ms, backup_type)
  VALUES ('7d8e1254-2cff-4155-8112-eea6e096c15f', 'shop', 'success', 'notify_result',
  '2026-03-18 00:00:00+00', '2026-03-18 00:03:12+00', 256901120, true, true, 'a1b2c3d4', 'combined',
  12, 3, 1048576, 192000, 'database+assets');
INSERT INTO backup_log (id, project_name, status, current_stage, started_at, completed_at,
  error_stage, error_message, retry_count, duration_ms, backup_type)
  VALUES (gen_random_uuid(), 'shop', 'failed', 'sync', '2026-03-19 00:00:00+00',
  '2026-03-19 00:01:00+00', 'sync',
  'Repository unreachable', 3, 60000, 'database+assets');
"""


def test_db_migrate_adopts_the_original_tool_s_backup_log_in_place(
    tmp_path: Path,
    pg_scram_db,  # type: ignore[no-untyped-def]
) -> None:
    import psycopg

    from tests.support.workspace import Workspace

    dsn = (f"host={pg_scram_db.host} port={pg_scram_db.port} dbname={pg_scram_db.name}"
           f" user={pg_scram_db.user} password={pg_scram_db.password}")  # fmt: skip
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(ORIGINAL_BACKUP_LOG)
        # a server in another zone: timestamptz values must not shift when we read them
        conn.execute(f"ALTER DATABASE {pg_scram_db.name} SET timezone TO 'Europe/Berlin'")
    ws = Workspace(tmp_path)
    ws.write_env(
        AUDIT_DB_HOST=pg_scram_db.host, AUDIT_DB_PORT=str(pg_scram_db.port),
        AUDIT_DB_NAME=pg_scram_db.name, AUDIT_DB_USER=pg_scram_db.user,
        AUDIT_DB_PASSWORD=pg_scram_db.password,
    )  # fmt: skip
    ws.write_config([{"name": "shop", "restic": {"repository_path": "/r"}}])
    backupctl = str(Path(sys.executable).with_name("backupctl"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([backupctl, *ws.cli_args(), *args], capture_output=True, text=True)

    migrate = run("db", "migrate")
    assert migrate.returncode == 0, migrate.stderr
    logs = run("logs", "shop", "--json")
    assert logs.returncode == 0, logs.stderr
    failed, success = json.loads(logs.stdout)  # newest first, both of the original's rows
    assert success["id"] == "7d8e1254-2cff-4155-8112-eea6e096c15f"
    assert (success["status"], success["snapshot_id"], success["dump_size_bytes"]) == (
        "success", "a1b2c3d4", 256901120,
    )  # fmt: skip
    assert datetime.fromisoformat(success["started_at"]) == datetime(2026, 3, 18, tzinfo=UTC)
    assert (failed["status"], failed["error_stage"], failed["retry_count"]) == ("failed", "sync", 3)
    status = json.loads(run("status", "--json").stdout)
    assert status["shop"]["status"] == "failed"
    # and our own rows go into the same table from now on (its status is an enum there)
    store = AuditStore.open(ws.load().settings.audit_db)
    record = RunRecord(project_name="shop", started_at=datetime.now(UTC), snapshot_mode="combined")
    store.start_run(record)
    record.status, record.completed_at = RunStatus.SUCCESS, datetime.now(UTC)
    store.finish_run(record)
    newest = store.history("shop", 1)[0]
    assert newest.status is RunStatus.SUCCESS and newest.id == record.id
    assert abs((newest.started_at - record.started_at).total_seconds()) < 1  # no zone shift
    store.close()
    with psycopg.connect(dsn) as conn:
        columns = {row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'backup_log'"
        )}  # fmt: skip
    assert {"backup_type", "dump_file", "warning_message"} <= columns


def test_drills_are_recorded_apart_from_backups(store: AuditStore) -> None:
    from backupctl_core.domain.drill import DrillReport

    first = datetime(2026, 3, 18, 5, 0, tzinfo=UTC)
    passed = DrillReport("locaboo", "a1b2c3d4", first, duration_ms=4200, restored_bytes=10)
    passed.add("rows", True, "2 table(s)")
    store.record_drill(passed, first + timedelta(seconds=5))
    failed = DrillReport("locaboo", "b2c3d4e5", first + timedelta(days=1))
    failed.add("rows", True, "2 table(s)")
    failed.add("check 1", False, "false: SELECT 1 = 2")
    store.record_drill(failed, first + timedelta(days=1, seconds=5))

    latest = store.latest_drills(["locaboo", "other"])
    assert list(latest) == ["locaboo"]
    assert latest["locaboo"].ok is False
    assert latest["locaboo"].error_message == "check 1: false: SELECT 1 = 2"
    assert latest["locaboo"].last_success == first
    history = store.drill_history("locaboo", last=5)
    assert [(d.snapshot_id, d.ok, d.duration_ms) for d in history] == [
        ("b2c3d4e5", False, 0),
        ("a1b2c3d4", True, 4200),
    ]
    # Never a backup: no run row, no status count.
    assert store.history("locaboo") == []
    assert store.status_counts(["locaboo"]) == {"locaboo": {}}
