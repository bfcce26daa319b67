"""Wiring: one project's pipeline with the real lock, store, files and plugins."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

from attrs import frozen

from backupctl_core.audit.fleet import Fleet, Origin
from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig
from backupctl_core.domain.errors import Interrupted
from backupctl_core.domain.pipeline import BackupPipeline
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.retry import RetryPolicy
from backupctl_core.domain.settings import ProjectSettings
from backupctl_core.domain.stages import Stage
from backupctl_core.plugins import PluginRegistry
from backupctl_core.runtime.audit_log import ResilientAuditLog
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.files import ProjectFiles
from backupctl_core.runtime.lock import ProjectLock, RunLock
from backupctl_core.runtime.masking import project_secrets
from backupctl_core.runtime.notifier import Notifier
from backupctl_core.runtime.progress import ProgressOptions, RunProgress
from backupctl_core.runtime.shell import ShellHookRunner
from backupctl_core.runtime.watchdog import TimeoutWatchdog


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


PAUSE_ENV = "BACKUPCTL_TEST_PAUSE_AT_STAGE"


def pause_for_tests(stage: Stage) -> None:
    """Fault-injection tests set ``BACKUPCTL_TEST_PAUSE_AT_STAGE=sync`` to hold a run
    at that stage (and SIGKILL it there); the marker file says it got there."""
    wanted = os.environ.get(PAUSE_ENV)
    if wanted and wanted == stage.value:
        marker = os.environ.get(PAUSE_ENV + "_MARKER")
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(3600)


@frozen
class RunOutcome:
    record: RunRecord
    connectivity_failure: bool
    interrupted: Interrupted | None = None

    @property
    def ok(self) -> bool:
        return self.record.status is RunStatus.SUCCESS


def run_project(
    config: AppConfig,
    project: ProjectSettings,
    registry: PluginRegistry,
    store: AuditStore,
    *,
    wait_for_lock: bool = False,
    on_stage: Callable[[Stage], None] = lambda stage: None,
    clock: SystemClock | None = None,
    notifier: Notifier | None = None,
    progress: ProgressOptions | None = None,
) -> RunOutcome:
    """One backup of ``project``; with ``progress``, progress lines while it runs."""
    settings = config.settings
    project_dir = settings.project_dir(project.name)
    notify = (notifier or Notifier(config, registry)).for_project(project)
    watchdog = None
    if project.timeout_minutes:
        watchdog = TimeoutWatchdog(project.timeout_minutes, notify, settings.timezone)

    files = ProjectFiles(project_dir, project.name, settings.timezone)
    reporter = None
    if progress is not None:
        reporter = RunProgress(
            project.name, progress, dump_stem=lambda: files.last_stem, timezone=settings.timezone
        )

    def stage_observer(stage: Stage) -> None:
        if reporter is not None:
            reporter.stage(stage)
        pause_for_tests(stage)
        on_stage(stage)

    plugins = registry.for_project(project, settings)
    origin = Origin(settings.hostname, os.getpid())
    locks: list[AbstractContextManager[object]] = [
        ProjectLock(project_dir, project.name, wait=wait_for_lock)
    ]
    fleet = Fleet.open(settings.audit_db, origin)
    if fleet is not None:
        locks.append(fleet.run_lock(project.name))
    pipeline = BackupPipeline(
        project,
        lock=RunLock(*locks),
        audit=ResilientAuditLog(store, FallbackLog(settings.fallback_file)),
        plugins=plugins,
        notify=notify,
        heartbeat=plugins.monitor_ping,
        watchdog=watchdog,
        hooks=ShellHookRunner(),
        files=files,
        clock=clock or SystemClock(),
        retry=RetryPolicy(retries=settings.retry_count, delay_ms=settings.retry_delay_ms),
        timezone=settings.timezone,
        secrets=[*project_secrets(project), *config.secret_values],
        on_stage=stage_observer,
        origin=(origin.hostname, origin.pid),
    )
    with reporter if reporter is not None else nullcontext():
        record = pipeline.run()
    return RunOutcome(record, pipeline.connectivity_failure, pipeline.interrupted)
