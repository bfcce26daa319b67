"""The backup pipeline: SPEC's steps 0–12 for one project.

Everything it touches comes in through the ports (``domain.ports``); the
runtime layer wires real implementations, tests may wire their own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from backupctl_core.domain.artifacts import DumpArtifact
from backupctl_core.domain.drill import manifest_path
from backupctl_core.domain.errors import Interrupted, PluginError
from backupctl_core.domain.events import (
    Event,
    failed_event,
    missing_assets_event,
    missing_assets_text,
    started_event,
    success_event,
)
from backupctl_core.domain.monitor import Ping, result_ping, start_ping
from backupctl_core.domain.ports import (
    AuditLog,
    Clock,
    LocalFiles,
    ProjectPlugins,
    ShellHooks,
    Watchdog,
)
from backupctl_core.domain.prune import PruneHistory, plan_prune
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.retry import RetryPolicy
from backupctl_core.domain.settings import ProjectSettings, mask
from backupctl_core.domain.stages import Stage

log = logging.getLogger("backupctl.pipeline")
T = TypeVar("T")


class StageFailed(Exception):
    def __init__(self, stage: Stage, message: str, retries: int, connectivity: bool = False):
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.retries = retries
        self.connectivity = connectivity


def snapshot_tags(project: str, kind: str) -> list[str]:
    """SPEC's tags: ``project:{name}`` plus ``backupctl:{kind}``; a kind that holds a
    path (``assets:/srv/x``) is encoded so that any path fits in one restic tag."""
    return [f"project:{project}", f"backupctl:{encode_tag(kind)}"]


def encode_tag(text: str) -> str:
    """``text`` as a restic tag: ``%``, ``,`` (restic splits tags on it) and control
    characters percent-encoded; every other character, so every ordinary path, stays
    as it is, and the tags of earlier runs stay identical (prune keeps one series)."""
    return "".join(
        f"%{ord(c):02X}" if c in "%," or ord(c) < 32 or ord(c) == 127 else c for c in text
    )


def decode_tag(tag: str) -> str:
    """The text ``encode_tag`` encoded (``%2C`` → ``,``)."""
    return re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), tag)


def _part(tags: Sequence[str]) -> str:
    """``db`` or ``assets:/srv/x``: what a separate-mode snapshot holds, from its tags."""
    kind = next((t for t in tags if t.startswith("backupctl:")), "backupctl:?")
    return decode_tag(kind.removeprefix("backupctl:"))


class BackupPipeline:
    def __init__(
        self,
        project: ProjectSettings,
        *,
        lock: AbstractContextManager[object],
        audit: AuditLog,
        plugins: ProjectPlugins,
        notify: Callable[[Event], None],
        heartbeat: Callable[[Ping], None] = lambda ping: None,
        hooks: ShellHooks,
        files: LocalFiles,
        clock: Clock,
        retry: RetryPolicy,
        timezone: str,
        secrets: Sequence[str] = (),
        watchdog: Watchdog | None = None,
        on_stage: Callable[[Stage], None] = lambda stage: None,
        origin: tuple[str, int] | None = None,
    ) -> None:
        self.project = project
        self.origin = origin  # (host name, pid) recorded on the run's row
        self.lock = lock
        self.audit = audit
        self.plugins = plugins
        self.notify = notify
        self.heartbeat = heartbeat
        self.watchdog = watchdog
        self.hooks = hooks
        self.files = files
        self.clock = clock
        self.retry = retry
        self.zone = ZoneInfo(timezone)
        self.secrets = list(secrets)
        self.on_stage = on_stage
        self._progress_warned = False
        self._manifest: DumpArtifact | None = None
        self.connectivity_failure = False
        self.interrupted: Interrupted | None = None

    # -- steps 0 and 12: the lock wraps everything; ``with`` releases it always
    def run(self) -> RunRecord:
        with self.lock:
            return self._run_locked()

    def _run_locked(self) -> RunRecord:
        started = self.clock.now()
        start_tick = self.clock.monotonic()
        record = RunRecord(
            project_name=self.project.name,
            started_at=started,
            snapshot_mode=self.project.restic.snapshot_mode,
        )
        if self.origin is not None:
            record.hostname, record.pid = self.origin
        self.audit.start_run(record)  # 0b
        log.info("%s: backup started (run %s)", record.project_name, record.id)
        watching = self.watchdog.watch(record) if self.watchdog else nullcontext()
        with watching:
            self._stages(record)
        record.completed_at = self.clock.now()
        record.duration_ms = int((self.clock.monotonic() - start_tick) * 1000)
        self._enter(record, Stage.FINALIZE)
        self.audit.finish_run(record)
        self._enter(record, Stage.NOTIFY_RESULT, track=False)
        local_end = record.completed_at.astimezone(self.zone)
        log.info(
            "%s: backup %s (run %s, snapshot %s, %d ms)%s",
            record.project_name, record.status.value, record.id, record.snapshot_id or "-",
            record.duration_ms, f": {record.warning_message}" if record.warning_message else "",
        )  # fmt: skip
        if record.status is RunStatus.SUCCESS:
            db_name = self.project.database.name if self.project.database else None
            self._notify(success_event(record, db_name, local_end))
        else:
            self._notify(failed_event(record, self.retry.retries, local_end))
        self._ping(result_ping(record))
        return record

    def _stages(self, record: RunRecord) -> None:
        """Steps 1–9; a failure is recorded on ``record``, never raised."""
        pre_hook_ran = False
        try:
            self._enter(record, Stage.NOTIFY_STARTED)
            self._notify(started_event(record, record.started_at.astimezone(self.zone)))
            self._ping(start_ping(record))
            if self.project.hooks.pre_backup:
                self._enter(record, Stage.PRE_HOOK)
                self._run_hook(record, Stage.PRE_HOOK, self.project.hooks.pre_backup)
            pre_hook_ran = True
            self._back_up(record)
            record.status = RunStatus.SUCCESS
        except StageFailed as failure:
            self._fail(record, failure)
        except Interrupted as stop:  # between stages (a notification, an audit write)
            self.interrupted = stop
            stage = Stage(record.current_stage) if record.current_stage else Stage.NOTIFY_STARTED
            self._fail(record, StageFailed(stage, str(stop), record.retry_count))
        if pre_hook_ran and self.project.hooks.post_backup:
            # Runs after failures too: a pre-hook that stopped a service wants
            # its post-hook to start it again whatever happened in between.
            self._enter(record, Stage.POST_HOOK)
            try:
                self._run_hook(record, Stage.POST_HOOK, self.project.hooks.post_backup)
            except StageFailed as failure:
                if record.status is not RunStatus.FAILED:
                    self._fail(record, failure)

    def _back_up(self, record: RunRecord) -> None:
        with self.plugins.run_session():
            self._steps(record)

    def _steps(self, record: RunRecord) -> None:
        project = self.project
        dump = self._dump(record) if project.database is not None else None
        assets, missing = self.files.split_existing(project.assets.paths)
        if missing:
            # Not a failure (REFERENCE: skipped with a warning), but never a silent
            # success either: the row, the messages and the summary say so.
            record.warning_message = missing_assets_text(missing)
            log.warning("%s: %s (skipped)", project.name, record.warning_message)
            local_now = self.clock.now().astimezone(self.zone)
            self._notify(missing_assets_event(record, missing, local_now))
        self._enter(record, Stage.SYNC)
        self._sync(record, dump, assets)
        self._prune(record)
        now = self.clock.now()
        record.local_files_cleaned = self._stage(
            record,
            Stage.CLEANUP,
            lambda: self.files.cleanup(project.retention.local_days, now),
        )

    def _prune(self, record: RunRecord) -> None:
        """Step 7: forget, and prune when due (``domain.prune``); record which."""
        try:
            history: PruneHistory | None = self.audit.prune_history(self.project.name)
        except Exception as error:  # unknown: prune whenever forget removes something
            log.warning("%s: last prune unknown (%s); pruning if anything is forgotten",
                        self.project.name, mask(str(error), self.secrets))  # fmt: skip
            history = None
        plan = plan_prune(self.project.retention.prune_every, history, self.clock.now())
        result = self._stage(record, Stage.PRUNE, partial(self.plugins.prune, plan.reclaim))
        record.prune_snapshots_removed = result.snapshots_removed
        if result.space_reclaimed:
            record.pruned_at = self.clock.now()
        elif result.space_reclaimed is False and plan.due_at is not None:
            waiting = result.snapshots_removed or (history is not None and history.unreclaimed)
            record.prune_deferred_until = plan.due_at if waiting else None

    def _dump(self, record: RunRecord) -> DumpArtifact:
        """Steps 3–5: dump, verify, encrypt; the artifact to sync."""
        stem = self.files.new_dump_stem(record.started_at)
        dump = self._stage(record, Stage.DUMP, lambda: self.plugins.dump(stem))
        record.dump_path = dump.path
        record.dump_size_bytes = dump.size_bytes
        if self.project.verification.enabled:
            self._stage(record, Stage.VERIFY, lambda: self._verify(dump))
            record.verified = True
        manifest = self._stage(
            record, Stage.VERIFY, partial(self._write_manifest, dump), track=False
        )
        record.manifest_path = manifest.path if manifest else None
        if self.project.encryption_enabled:
            dump = self._stage(record, Stage.ENCRYPT, partial(self.plugins.encrypt, dump))
            record.dump_path = dump.path
            if manifest is not None:  # table names are the operator's data too
                manifest = self._stage(
                    record, Stage.ENCRYPT, partial(self.plugins.encrypt, manifest), track=False
                )
                record.manifest_path = manifest.path
            record.encrypted = True
        self._manifest = manifest
        return dump

    def _write_manifest(self, dump: DumpArtifact) -> DumpArtifact | None:
        """The dumper's manifest of ``dump``, written beside it (restore drills read it)."""
        manifest = self.plugins.manifest(dump)
        if manifest is None:
            return None
        path = manifest_path(dump.path)
        text = manifest.to_json()
        self.files.write_private(path, text)
        return DumpArtifact(path=path, size_bytes=len(text.encode()), format="manifest")

    def _verify(self, dump: DumpArtifact) -> None:
        result = self.plugins.verify(dump)
        if not result.ok:
            raise PluginError(f"dump verification failed: {result.detail}", retryable=False)

    def _sync(self, record: RunRecord, dump: DumpArtifact | None, assets: list[Path]) -> None:
        name = self.project.name
        dump_files = [dump.path] if dump else []
        if dump and self._manifest is not None:
            dump_files.append(self._manifest.path)
        if self.project.restic.snapshot_mode == "combined":
            batches = [dump_files + assets]
            tag_sets = [snapshot_tags(name, "combined")]
        else:
            batches = ([dump_files] if dump else []) + [[asset] for asset in assets]
            tag_sets = ([snapshot_tags(name, "db")] if dump else []) + [
                snapshot_tags(name, f"assets:{asset}") for asset in assets
            ]
        batches_with_paths = [(b, t) for b, t in zip(batches, tag_sets, strict=True) if b]
        if not batches_with_paths:
            raise StageFailed(Stage.SYNC, "nothing to back up: no dump and no asset path exists", 0)
        record.files_new = record.files_changed = record.bytes_added = 0
        stored: list[str] = []
        for index, (paths, tags) in enumerate(batches_with_paths):
            try:
                result = self._stage(
                    record,
                    Stage.SYNC,
                    partial(self.plugins.sync, paths, tags),
                    track=False,
                )
            except StageFailed as failure:
                if len(batches_with_paths) > 1:  # separate mode: say what is and is not stored
                    missing = [_part(t) for _, t in batches_with_paths[index:]]
                    failure.message += (
                        f"; stored: {', '.join(stored) or 'nothing'};"
                        f" not stored: {', '.join(missing)}"
                    )
                raise
            stored.append(f"{_part(tags)} ({result.snapshot_id})")
            # In separate mode the first snapshot (the dump's, if any) is the
            # run's snapshot id; counts add up over all snapshots.
            record.snapshot_id = record.snapshot_id or result.snapshot_id
            record.files_new += result.files_new
            record.files_changed += result.files_changed
            record.bytes_added += result.bytes_added

    # -- helpers
    def _enter(self, record: RunRecord, stage: Stage, *, track: bool = True) -> None:
        record.current_stage = stage.value
        if track:
            try:
                self.audit.track_progress(record.id, stage)
            except Exception as error:  # progress is informative; never fail a run on it
                if not self._progress_warned:
                    log.warning("%s: stage progress not recorded: %s", record.project_name, error)
                    self._progress_warned = True
        self.on_stage(stage)

    def _stage(
        self, record: RunRecord, stage: Stage, action: Callable[[], T], *, track: bool = True
    ) -> T:
        if track:
            self._enter(record, stage)

        def note_retry(attempt: int, error: Exception) -> None:
            record.retry_count += 1
            log.warning(
                "%s: %s failed (%s), retry %d/%d",
                record.project_name,
                stage.label,
                mask(str(error), self.secrets),
                attempt,
                self.retry.retries,
            )

        try:
            result, _ = self.retry.call(action, sleep=self.clock.sleep, on_retry=note_retry)
            return result
        except PluginError as error:
            raise StageFailed(
                stage, error.message, record.retry_count, connectivity=error.connectivity
            ) from error
        except Interrupted as stop:  # never retried: the operator asked to stop
            self.interrupted = stop
            raise StageFailed(stage, str(stop), record.retry_count) from None
        except OSError as error:
            raise StageFailed(stage, str(error), record.retry_count) from error

    def _run_hook(self, record: RunRecord, stage: Stage, command: str) -> None:
        env = {
            **self.project.hooks.env,
            "BACKUPCTL_PROJECT": record.project_name,
            "BACKUPCTL_RUN_ID": record.id,
            "BACKUPCTL_STATUS": record.status.value,
        }
        try:
            self.hooks.run(command, self.project.hooks.timeout_seconds, env)
        except PluginError as error:
            raise StageFailed(stage, error.message, 0) from error
        except Interrupted as stop:
            self.interrupted = stop
            raise StageFailed(stage, str(stop), 0) from None

    def _fail(self, record: RunRecord, failure: StageFailed) -> None:
        record.status = RunStatus.FAILED
        record.error_stage = failure.stage.value
        record.error_message = mask(failure.message, self.secrets)
        self.connectivity_failure = failure.connectivity
        log.error(
            "%s: %s failed: %s", record.project_name, failure.stage.label, record.error_message
        )

    def _notify(self, event: Event) -> None:
        try:
            self.notify(event)
        except Exception as error:  # a notification failure is never a backup failure
            log.warning("%s: notification failed: %s", self.project.name, error)

    def _ping(self, ping: Ping) -> None:
        try:
            self.heartbeat(ping)
        except Exception as error:  # a monitor failure is never a backup failure
            log.warning(
                "%s: monitor %s ping not delivered: %s",
                self.project.name, ping.phase.value, mask(str(error), self.secrets),
            )  # fmt: skip
