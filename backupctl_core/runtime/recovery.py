"""Crash recovery: SPEC's six steps, on every service start and on demand.

Each step is reported; one failing step never stops the others. Projects whose
lock is held right now (a backup running in another process) are left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from attrs import evolve, frozen

from backupctl_core.audit.fleet import Fleet, Origin
from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig
from backupctl_core.domain.drill import manifest_path
from backupctl_core.domain.errors import LockHeldError
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.plugins import PluginRegistry
from backupctl_core.runtime.audit_log import KIND as KIND_AUDIT
from backupctl_core.runtime.audit_log import replay_audit
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.files import ProjectFiles, remove_dump, stale_tempdirs
from backupctl_core.runtime.lock import ProjectLock, is_stale
from backupctl_core.runtime.notifier import Notifier
from backupctl_core.runtime.original_fallback import ORIGINAL_PREFIX

log = logging.getLogger("backupctl.recovery")
CRASH_STAGE = "crash_recovery"


@frozen
class StepReport:
    step: str
    ok: bool
    detail: str
    warnings: tuple[str, ...] = ()


@frozen
class StepResult:
    """What a step did, and what it saw but left alone for the operator."""

    detail: str
    warnings: tuple[str, ...] = ()


class Recovery:
    def __init__(self, config: AppConfig, registry: PluginRegistry, store: AuditStore) -> None:
        self.config = config
        self.registry = registry
        self.store = store
        self.settings = config.settings

    def _busy(self, project: str) -> bool:
        """True when a backup of ``project`` holds its lock right now."""
        lock = ProjectLock(self.settings.project_dir(project), project)
        try:
            lock.acquire()
        except LockHeldError:
            return True
        lock.release()
        return False

    def _ours(self, record: RunRecord) -> bool:
        """A run of this host: with SQLite every run is (a container recreated with
        another host name included); in a fleet, one that names this host or none."""
        if not self.settings.audit_db.host:
            return True
        return record.hostname in (None, self.settings.hostname)

    def orphaned_rows(self) -> str:
        """Mark ``started`` rows of dead runs failed. A run of this host is alive while
        it holds its local lock; in a fleet, while it holds its advisory lock too, and
        another host's run is judged by that lock alone (its files are not here)."""
        fleet = Fleet.open(self.settings.audit_db, Origin(self.settings.hostname, os.getpid()))
        marked = 0
        for record in self.store.orphans():
            if self._ours(record) and self._busy(record.project_name):
                continue
            if fleet is not None and fleet.is_held(record.project_name):
                continue
            marked += self._mark_interrupted(record)
        return f"{marked} interrupted run(s) marked failed"

    def other_hosts_orphans(self, fleet: Fleet) -> str:
        """``serve``'s periodic part of recovery in a fleet: other hosts' runs whose
        advisory lock is free (their process died or lost its connection). This
        host's runs are left to its own start-up recovery: probing its local lock
        could make a run starting now fail."""
        marked = [
            f"{record.project_name} run {record.id} of {record.hostname}"
            for record in self.store.orphans()
            if not self._ours(record)
            and not fleet.is_held(record.project_name)
            and self._mark_interrupted(record)
        ]
        return (
            f"{len(marked)} interrupted run(s) marked failed: {', '.join(marked)}" if marked else ""
        )

    def _mark_interrupted(self, record: RunRecord) -> bool:
        now = datetime.now(UTC)
        where = f" on {record.hostname} (pid {record.pid})" if not self._ours(record) else ""
        return self.store.finish_if_started(
            evolve(
                record,
                status=RunStatus.FAILED,
                completed_at=now,
                error_stage=CRASH_STAGE,
                error_message=(
                    f"the process ended during {record.current_stage or 'start'}{where}"
                ),
                duration_ms=int((now - record.started_at).total_seconds() * 1000),
            )
        )

    def orphaned_dumps(self) -> StepResult:
        """Remove only dumps that provably belong to a failed (or just interrupted) run.

        A dump is that run's when the run recorded it (``dump_file``), or, for a run
        that crashed before recording it, when its name carries the run's start stamp.
        Anything else matching ``{project}_backup_*`` (a successful run's dump, the
        original tool's dumps, an operator's copy) is listed and left.
        """
        removed: list[str] = []
        left: list[str] = []
        pending = self._dumps_in_fallback()
        for project in self.config.projects:
            if self._busy(project.name):
                continue
            files = ProjectFiles(
                self.settings.project_dir(project.name), project.name, self.settings.timezone
            )
            keep = _with_manifests(self.store.successful_dumps(project.name) | pending)
            failed = self.store.failed_runs(project.name)
            failed_files = {run.dump_path for run in failed if run.dump_path is not None}
            failed_stamps = {files.stamp(run.started_at) for run in failed}
            for dump in files.dumps():
                if dump in keep:
                    continue
                if dump in failed_files or files.stamp_of(dump) in failed_stamps:
                    remove_dump(dump)
                    removed.append(dump.name)
                else:
                    left.append(str(dump))
        detail = f"{len(removed)} orphaned dump(s) removed" + (
            f": {', '.join(removed)}" if removed else ""
        )
        if left:
            detail += f"; {len(left)} left (no failed run to attribute them to)"
        return StepResult(detail, tuple(f"kept {path}: not made by a failed run" for path in left))

    def _dumps_in_fallback(self) -> set[Path]:
        """Dumps named by audit entries the replay could not write yet: their runs'
        outcome is unknown to the store, so their files are not ours to judge."""
        found = set()
        fallback = FallbackLog(self.settings.fallback_file)
        for entry in fallback.entries(KIND_AUDIT):
            dump = (entry.get("record") or {}).get("dump_path")
            if dump:
                found.add(Path(dump))
        for entry in fallback.entries(ORIGINAL_PREFIX + KIND_AUDIT):  # the original tool's
            dump = ((entry.get("payload") or {}).get("dumpResult") or {}).get("filePath")
            if dump:
                found.add(Path(dump))
        return found

    def stale_locks(self) -> str:
        removed = []
        for project in self.config.projects:
            path = self.settings.project_dir(project.name) / ".lock"
            if is_stale(path):
                path.unlink(missing_ok=True)
                removed.append(project.name)
        return f"{len(removed)} stale lock(s) removed" + (
            f": {', '.join(removed)}" if removed else ""
        )

    def stale_tempdirs(self) -> str:
        """Temp folders of killed processes (restic's scratch, tools' option files)."""
        import shutil

        import psutil

        removed = stale_tempdirs(self.settings.backup_base_dir, psutil.pid_exists)
        for folder in removed:
            shutil.rmtree(folder, ignore_errors=True)
        return f"{len(removed)} stale temp folder(s) removed"

    def unlock_repositories(self) -> str:
        done, failed = 0, []
        for project in self.config.enabled_projects:
            try:
                self.registry.for_project(project, self.settings).unlock()
                done += 1
            except Exception as error:  # logged, not fatal
                failed.append(f"{project.name} ({error})")
        if failed:
            raise RuntimeError(f"{done} unlocked; failed: {'; '.join(failed)}")
        return f"{done} repositor{'y' if done == 1 else 'ies'} unlocked"

    def replay(self) -> str:
        fallback = FallbackLog(self.settings.fallback_file)
        audit = replay_audit(self.store, fallback)
        notes = Notifier(self.config, self.registry).replay()
        return (
            f"audit rows: {audit[0]} replayed, {audit[1]} pending;"
            f" notifications: {notes[0]} delivered, {notes[1]} pending"
        )

    def import_gpg_keys(self) -> str:
        if self.settings.gpg_keys_dir is None:
            return "GPG_KEYS_DIR not set: nothing to import"
        from backupctl_core.builtin.gpg_keyring import import_keys_from_dir

        keys = import_keys_from_dir(self.settings)
        return f"{len(keys)} key(s) imported from {self.settings.gpg_keys_dir}"

    def steps(self) -> list[tuple[str, Callable[[], str | StepResult]]]:
        # Replay first so replayed rows are not mistaken for orphans, nor
        # their dumps for orphaned files.
        # Stale locks before the orphan steps: those probe each project's lock,
        # and taking and releasing a stale lock would remove it unreported.
        return [
            ("replay fallback", self.replay),
            ("stale locks", self.stale_locks),
            ("orphaned runs", self.orphaned_rows),
            ("orphaned dumps", self.orphaned_dumps),
            ("temp files", self.stale_tempdirs),
            ("repository unlock", self.unlock_repositories),
            ("gpg keys", self.import_gpg_keys),
        ]

    def run(self) -> list[StepReport]:
        reports = []
        for name, step in self.steps():
            try:
                result = step()
            except Exception as error:
                log.warning("recovery step %s failed: %s", name, error)
                reports.append(StepReport(name, False, str(error)))
                continue
            if isinstance(result, str):
                result = StepResult(result)
            reports.append(StepReport(name, True, result.detail, result.warnings))
        for report in reports:
            log.info("recovery: %s: %s", report.step, report.detail)
            for warning in report.warnings:
                log.warning("recovery: %s: %s", report.step, warning)
        return reports


def _with_manifests(dumps: set[Path]) -> set[Path]:
    """``dumps`` and the manifest stored beside each (encrypted with it, or not)."""
    found = set(dumps)
    for dump in dumps:
        plain = dump.with_suffix("") if dump.suffix == ".gpg" else dump
        found.add(manifest_path(plain))
        found.add(manifest_path(plain).with_name(manifest_path(plain).name + ".gpg"))
    return found
