"""The audit store: start → progress → finish, and the queries the CLI needs.

SQLite (a file under the backup base dir) when no ``AUDIT_DB_HOST`` is set,
PostgreSQL through psycopg 3 when it is. Tables come only from the versioned
migrations in ``migrations/``, applied by ``backupctl db migrate`` or at
service start; a normal command on an unmigrated store says so and stops.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import peewee

from backupctl_core.audit import import_without_psycopg
from backupctl_core.audit.models import BackupLog, DrillLog, FleetClaim, FleetReplica
from backupctl_core.audit.postgres_driver import PostgresDatabase
from backupctl_core.domain.drill import DrillReport, DrillSummary
from backupctl_core.domain.errors import BackupctlError, ConnectivityError
from backupctl_core.domain.prune import PruneHistory
from backupctl_core.domain.records import Replica, RunRecord, RunStatus
from backupctl_core.domain.settings import AuditDbSettings
from backupctl_core.domain.stages import Stage
from backupctl_core.plugin_kit import make_private_dir

if TYPE_CHECKING:
    from playhouse.migrations import Runner

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_TABLE = "schema_migration"  # playhouse.migrations.Runner's history table
_FIELDS = [
    "project_name", "status", "current_stage", "started_at", "completed_at",
    "dump_size_bytes", "encrypted", "verified", "snapshot_id", "snapshot_mode",
    "files_new", "files_changed", "bytes_added", "prune_snapshots_removed",
    "local_files_cleaned", "error_stage", "error_message", "retry_count", "duration_ms",
    "warning_message", "pruned_at", "prune_deferred_until", "hostname", "pid",
]  # fmt: skip
_TIMES = ("started_at", "completed_at", "pruned_at", "prune_deferred_until")


def _migration_names() -> list[str]:
    """The migration files, in order (the names Runner records when it applies them)."""
    return sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9]*.py"))


def _to_db_time(moment: datetime | None) -> datetime | None:
    """Stored as naive UTC: the same on SQLite and PostgreSQL."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _from_db_time(moment: Any) -> datetime | None:
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    value: datetime = moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class AuditStore:
    def __init__(self, database: peewee.Database, description: str) -> None:
        self.database = database
        self.description = description
        database.bind([BackupLog, DrillLog, FleetClaim, FleetReplica])

    @classmethod
    def open(cls, settings: AuditDbSettings) -> AuditStore:
        if settings.host:
            database: peewee.Database = PostgresDatabase(
                settings.name,
                host=settings.host,
                port=settings.port,
                user=settings.user,
                password=settings.password.reveal() if settings.password else None,
                connect_timeout=10,
                # Times are stored as UTC. In a session of another zone, a naive UTC
                # value written to a timestamptz column (the original tool's table)
                # would be read as local time and shift by the zone's offset.
                options="-c TimeZone=UTC",
            )
            where = f"PostgreSQL {settings.user}@{settings.host}:{settings.port}/{settings.name}"
        else:
            assert settings.sqlite_path is not None
            database = peewee.SqliteDatabase(
                str(settings.sqlite_path),
                pragmas={"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1},
            )
            where = f"SQLite {settings.sqlite_path}"
        return cls(database, where)

    @property
    def sqlite_path(self) -> Path | None:
        if isinstance(self.database, peewee.SqliteDatabase):
            return Path(self.database.database)
        return None

    @contextmanager
    def _connected(self) -> Iterator[None]:
        """Connect if needed; a lost connection becomes ``ConnectivityError`` and
        is closed, so the next call connects afresh."""
        try:
            self.database.connect(reuse_if_open=True)
            yield
        except (peewee.OperationalError, peewee.InterfaceError) as error:
            with suppress(Exception):
                self.database.close()
            detail = str(error).strip().splitlines()[0] if str(error).strip() else "unreachable"
            raise ConnectivityError(f"audit database {self.description}: {detail}") from None

    def close(self) -> None:
        if not self.database.is_closed():
            self.database.close()

    # -- migrations
    def _runner(self) -> Runner:
        # playhouse.migrations (and what it imports) only for `db migrate` / `db status`.
        migrations = import_without_psycopg("playhouse.migrations")
        runner: Runner = migrations.Runner(
            self.database, str(MIGRATIONS_DIR), table_name=MIGRATION_TABLE
        )
        return runner

    def migrate(self) -> list[str]:
        """Apply pending migrations (the only place tables are created)."""
        if self.sqlite_path is not None:
            try:
                make_private_dir(self.sqlite_path.parent)
            except OSError as error:  # name the settings that chose the path
                raise BackupctlError(
                    f"cannot create the audit store's folder {self.sqlite_path.parent}"
                    f" ({error.strerror}): set BACKUP_BASE_DIR or AUDIT_DB_SQLITE_PATH in .env"
                    " to a folder this user may write"
                ) from None
        with self._connected():
            applied: list[str] = self._runner().up()
            return applied

    def migration_status(self) -> list[tuple[str, datetime | None]]:
        if self.sqlite_path is not None and not self.sqlite_path.exists():
            return [(m.name, None) for m in self._runner().migrations()]
        with self._connected():
            return [(m.name, m.applied) for m in self._runner().status()]

    def ensure_migrated(self) -> None:
        """Every command checks this: one query, without loading the migration runner."""
        applied = self._applied_names()
        pending = [name for name in _migration_names() if name not in applied]
        if pending:
            raise BackupctlError(
                f"audit database {self.description} is not migrated"
                f" (pending: {', '.join(pending)}); run `backupctl db migrate`"
            )

    def _applied_names(self) -> set[str]:
        if self.sqlite_path is not None and not self.sqlite_path.exists():
            return set()  # do not create the file
        with self._connected():
            if not self.database.table_exists(MIGRATION_TABLE):
                return set()
            cursor = self.database.execute_sql(f"SELECT name FROM {MIGRATION_TABLE}")
            return {str(name) for (name,) in cursor.fetchall()}

    # -- the run lifecycle (the pipeline's AuditLog port)
    def start_run(self, record: RunRecord) -> None:
        with self._connected():
            self._insert(record)

    def track_progress(self, run_id: str, stage: Stage) -> None:
        with self._connected():
            BackupLog.update(current_stage=stage.value).where(
                BackupLog.id == uuid.UUID(run_id)
            ).execute()

    def finish_run(self, record: RunRecord) -> None:
        """Write the final row; inserts it when its start never reached the store."""
        with self._connected(), self.database.atomic():
            updated = (
                BackupLog.update(**self._values(record))
                .where(BackupLog.id == uuid.UUID(record.id))
                .execute()
            )
            if not updated:
                self._insert(record)

    def finish_if_started(self, record: RunRecord) -> bool:
        """``finish_run`` for crash recovery: only while the row is still ``started``,
        so a run that finished meanwhile (on another host) is never overwritten."""
        with self._connected():
            updated: int = (
                BackupLog.update(**self._values(record))
                .where(
                    (BackupLog.id == uuid.UUID(record.id))
                    & (BackupLog.status == RunStatus.STARTED.value)
                )
                .execute()
            )
            return updated == 1

    def ensure_started(self, record: RunRecord) -> None:
        """``start_run`` that is a no-op when the row exists (fallback replay)."""
        with self._connected(), self.database.atomic():
            if BackupLog.get_or_none(BackupLog.id == uuid.UUID(record.id)) is None:
                self._insert(record)

    def _insert(self, record: RunRecord) -> None:
        BackupLog.insert(
            id=uuid.UUID(record.id),
            created_at=_to_db_time(datetime.now(UTC)),
            **self._values(record),
        ).execute()

    @staticmethod
    def _values(record: RunRecord) -> dict[str, Any]:
        values = {name: getattr(record, name) for name in _FIELDS}
        values["status"] = record.status.value
        for name in _TIMES:
            values[name] = _to_db_time(getattr(record, name))
        values["dump_file"] = str(record.dump_path) if record.dump_path else None
        values["manifest_file"] = str(record.manifest_path) if record.manifest_path else None
        return values

    # -- queries
    @staticmethod
    def _record(row: BackupLog) -> RunRecord:
        values = {name: getattr(row, name) for name in _FIELDS}
        values["status"] = RunStatus(row.status)
        for name in _TIMES:
            values[name] = _from_db_time(getattr(row, name))
        values["dump_path"] = Path(row.dump_file) if row.dump_file else None
        values["manifest_path"] = Path(row.manifest_file) if row.manifest_file else None
        return RunRecord(id=str(row.id), **values)

    def history(
        self, project: str, last: int = 10, failed_only: bool = False, host: str | None = None
    ) -> list[RunRecord]:
        with self._connected():
            query = BackupLog.select().where(BackupLog.project_name == project)
            if host is not None:
                query = query.where(BackupLog.hostname == host)
            if failed_only:
                query = query.where(BackupLog.status == RunStatus.FAILED.value)
            rows = query.order_by(BackupLog.started_at.desc()).limit(last)
            return [self._record(row) for row in rows]

    def latest_per_project(
        self, projects: Iterable[str], host: str | None = None
    ) -> dict[str, RunRecord]:
        """The newest run of each of ``projects`` that has one (on ``host`` when given).

        One indexed ``ORDER BY started_at DESC LIMIT 1`` per project: a GROUP BY over
        the whole table reads every row, which grows with the history (100k rows).
        """
        latest: dict[str, RunRecord] = {}
        with self._connected():
            for project in projects:
                query = BackupLog.select().where(BackupLog.project_name == project)
                if host is not None:
                    query = query.where(BackupLog.hostname == host)
                row = query.order_by(BackupLog.started_at.desc()).first()
                if row is not None:
                    latest[project] = self._record(row)
        return latest

    def latest_by_status(
        self, projects: Iterable[str], statuses: Iterable[RunStatus]
    ) -> dict[str, dict[RunStatus, RunRecord]]:
        """The newest run of each project in each of ``statuses`` (projects and
        statuses without one are left out).

        One ``ORDER BY started_at DESC LIMIT 1`` per project and status: a seek on the
        index (project_name, status, started_at) (migration 0004), whatever the history.
        """
        wanted = list(statuses)
        latest: dict[str, dict[RunStatus, RunRecord]] = {}
        with self._connected():
            for project in projects:
                for status in wanted:
                    row = (
                        BackupLog.select()
                        .where(
                            (BackupLog.project_name == project) & (BackupLog.status == status.value)
                        )
                        .order_by(BackupLog.started_at.desc())
                        .first()
                    )
                    if row is not None:
                        latest.setdefault(project, {})[status] = self._record(row)
        return latest

    def status_counts(self, projects: Iterable[str]) -> dict[str, dict[RunStatus, int]]:
        """How many runs each project has per status (only statuses it has).

        One ``GROUP BY status`` per project, counted in the index (project_name,
        status, started_at) without reading the rows.
        """
        counts: dict[str, dict[RunStatus, int]] = {}
        with self._connected():
            for project in projects:
                query = (
                    BackupLog.select(BackupLog.status, peewee.fn.COUNT(peewee.SQL("*")))
                    .where(BackupLog.project_name == project)
                    .group_by(BackupLog.status)
                )
                rows = self.database.execute(query).fetchall()
                counts[project] = {RunStatus(status): int(n) for status, n in rows}
        return counts

    def prune_history(self, project: str) -> PruneHistory:
        """The project's newest ``pruned_at`` (a seek on the index of migration 0005),
        and whether a finished run since then forgot snapshots without pruning (only
        the rows since then, on the index (project_name, status, started_at): 1 ms
        over 100,000 rows; 23 ms when the project never pruned)."""
        with self._connected():
            last = _from_db_time(
                BackupLog.select(peewee.fn.MAX(BackupLog.pruned_at))
                .where(BackupLog.project_name == project)
                .scalar()
            )
            since = (
                (BackupLog.project_name == project)
                & BackupLog.status.in_([RunStatus.SUCCESS.value, RunStatus.FAILED.value])
                & (BackupLog.prune_snapshots_removed > 0)
                & BackupLog.pruned_at.is_null()
            )
            if last is not None:
                since &= BackupLog.started_at > _to_db_time(last)
            unreclaimed = BackupLog.select(BackupLog.id).where(since).exists()
        return PruneHistory(last_pruned_at=last, unreclaimed=unreclaimed)

    def finished_since(self, since: datetime) -> list[RunRecord]:
        """Every finished run that started at or after ``since``, oldest first."""
        with self._connected():
            rows = (
                BackupLog.select()
                .where(
                    (BackupLog.started_at >= _to_db_time(since))
                    & (BackupLog.status != RunStatus.STARTED.value)
                )
                .order_by(BackupLog.started_at)
            )
            return [self._record(row) for row in rows]

    def orphans(self) -> list[RunRecord]:
        """Runs still ``started`` with no ``completed_at``: crashed, or running now."""
        with self._connected():
            rows = BackupLog.select().where(
                (BackupLog.status == RunStatus.STARTED.value) & BackupLog.completed_at.is_null()
            )
            return [self._record(row) for row in rows]

    def successful_dumps(self, project: str) -> set[Path]:
        with self._connected():
            rows = BackupLog.select(BackupLog.dump_file).where(
                (BackupLog.project_name == project)
                & (BackupLog.status == RunStatus.SUCCESS.value)
                & BackupLog.dump_file.is_null(False)
            )
            return {Path(str(row.dump_file)) for row in rows}

    def failed_runs(self, project: str) -> list[RunRecord]:
        """The project's failed runs (crash recovery attributes left-over dumps to them)."""
        with self._connected():
            rows = BackupLog.select().where(
                (BackupLog.project_name == project) & (BackupLog.status == RunStatus.FAILED.value)
            )
            return [self._record(row) for row in rows]

    def get(self, run_id: str) -> RunRecord | None:
        with self._connected():
            row = BackupLog.get_or_none(BackupLog.id == uuid.UUID(run_id))
            return self._record(row) if row else None

    # -- restore drills (their own table: never counted as backups)
    def record_drill(self, report: DrillReport, completed_at: datetime) -> None:
        failures = report.failures
        with self._connected():
            DrillLog.insert(
                id=uuid.uuid4(),
                project_name=report.project,
                status="success" if report.ok else "failed",
                snapshot_id=report.snapshot_id or None,
                started_at=_to_db_time(report.started_at),
                completed_at=_to_db_time(completed_at),
                duration_ms=report.duration_ms,
                restored_bytes=report.restored_bytes,
                scratch_database=report.scratch_database,
                checks=json.dumps(report.as_json()["checks"]),
                error_message=f"{failures[0].name}: {failures[0].detail}" if failures else None,
                created_at=_to_db_time(datetime.now(UTC)),
            ).execute()

    def latest_drills(self, projects: Iterable[str]) -> dict[str, DrillSummary]:
        """Each project's newest drill and its newest successful one."""
        latest: dict[str, DrillSummary] = {}
        with self._connected():
            for project in projects:
                query = DrillLog.select().where(DrillLog.project_name == project)
                newest = query.order_by(DrillLog.started_at.desc()).first()
                if newest is None:
                    continue
                passed = (
                    query.where(DrillLog.status == "success")
                    .order_by(DrillLog.started_at.desc())
                    .first()
                )
                latest[project] = DrillSummary(
                    started_at=_from_db_time(newest.started_at) or datetime.now(UTC),
                    ok=newest.status == "success",
                    snapshot_id=newest.snapshot_id,
                    error_message=newest.error_message,
                    last_success=_from_db_time(passed.started_at) if passed else None,
                )
        return latest

    def drill_history(self, project: str, last: int = 10) -> list[DrillSummary]:
        with self._connected():
            rows = (
                DrillLog.select()
                .where(DrillLog.project_name == project)
                .order_by(DrillLog.started_at.desc())
                .limit(last)
            )
            return [
                DrillSummary(
                    started_at=_from_db_time(row.started_at) or datetime.now(UTC),
                    ok=row.status == "success",
                    snapshot_id=row.snapshot_id,
                    error_message=row.error_message,
                    duration_ms=row.duration_ms,
                )
                for row in rows
            ]

    # -- fleet mode (PostgreSQL; docs/fleet.md)
    def claim_tick(self, job: str, tick_at: datetime, hostname: str, pid: int) -> bool:
        """True when this replica is the first to claim ``job`` at ``tick_at`` (it runs
        it); False when another replica did (it never runs that tick)."""
        with self._connected():
            cursor = self.database.execute_sql(
                "INSERT INTO fleet_claim (job, tick_at, hostname, pid, claimed_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING".replace(
                    "%s", self.database.param
                ),
                (job, _to_db_time(tick_at), hostname, pid, _to_db_time(datetime.now(UTC))),
            )
            return bool(cursor.rowcount == 1)

    def forget_claims(self, before: datetime) -> int:
        with self._connected():
            deleted: int = (
                FleetClaim.delete().where(FleetClaim.tick_at < _to_db_time(before)).execute()
            )
            return deleted

    def heartbeat(self, replica: Replica) -> None:
        """Insert or refresh this replica's row (``serve`` calls it as it ticks)."""
        values = {
            "hostname": replica.hostname,
            "pid": replica.pid,
            "base_dir": replica.base_dir,
            "started_at": _to_db_time(replica.started_at),
            "last_seen": _to_db_time(replica.last_seen),
        }
        with self._connected():
            FleetReplica.insert(replica=f"{replica.hostname} {replica.pid}", **values).on_conflict(
                conflict_target=[FleetReplica.replica], update=values
            ).execute()

    def replicas(self, seen_since: datetime) -> list[Replica]:
        """The replicas whose heartbeat is newer than ``seen_since``, newest first."""
        with self._connected():
            rows = (
                FleetReplica.select()
                .where(FleetReplica.last_seen >= _to_db_time(seen_since))
                .order_by(FleetReplica.last_seen.desc())
            )
            return [
                Replica(
                    hostname=row.hostname,
                    pid=row.pid,
                    base_dir=row.base_dir,
                    started_at=_from_db_time(row.started_at) or datetime.now(UTC),
                    last_seen=_from_db_time(row.last_seen) or datetime.now(UTC),
                )
                for row in rows
            ]

    def forget_replicas(self, unseen_since: datetime) -> None:
        with self._connected():
            old = FleetReplica.last_seen < _to_db_time(unseen_since)
            FleetReplica.delete().where(old).execute()
