"""The long-running service (``backupctl serve``, the container's command).

Start: migrations, crash recovery (which imports the GPG keys), then the scheduler and
the HTTP endpoints. SIGHUP (sent by ``backupctl config reload``) re-reads the
config and re-registers the schedules; SIGTERM/SIGINT stop scheduling, let
running backups finish, and exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from backupctl_core.audit.fleet import Fleet, FleetLockHeld, Origin
from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig, load_config
from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.errors import BackupctlError, ConnectivityError
from backupctl_core.domain.events import daily_summary_event, job_failed_event
from backupctl_core.domain.records import Replica
from backupctl_core.domain.settings import ProjectSettings, mask
from backupctl_core.plugin_kit import make_private_dir
from backupctl_core.plugins import PluginRegistry
from backupctl_core.runtime.audit_log import replay_audit
from backupctl_core.runtime.checks import (
    FLEET_WINDOW,
    disk_check,
    drill_checks,
    fleet_check,
    readiness_checks,
)
from backupctl_core.runtime.drill import run_drill
from backupctl_core.runtime.fallback import FallbackLog
from backupctl_core.runtime.http_api import HttpApi, Text
from backupctl_core.runtime.lock import ServiceLock, held_by_live_process
from backupctl_core.runtime.log_format import set_log_zone
from backupctl_core.runtime.masking import SECRET_FILTER, all_secrets
from backupctl_core.runtime.notifier import Notifier
from backupctl_core.runtime.progress import ProgressOptions
from backupctl_core.runtime.recovery import Recovery
from backupctl_core.runtime.runner import run_project
from backupctl_core.runtime.scheduler import CronJob, CronScheduler, ProjectWorker

if TYPE_CHECKING:
    from backupctl_core.runtime.metrics import Metrics

log = logging.getLogger("backupctl.service")
SUMMARY_JOB = "daily-summary"
REPLAY_INTERVAL_SECONDS = 60.0
HEALTH_CACHE_SECONDS = 60.0
# How often a replica refreshes its heartbeat and looks for other hosts' dead runs.
FLEET_INTERVAL_SECONDS = 15.0


def pid_file(config: AppConfig) -> Path:
    return config.settings.backup_base_dir / ".backupctl-serve.pid"


class BackupService:
    def __init__(
        self,
        config_path: Path,
        env_path: Path,
        registry: PluginRegistry,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config_path = config_path
        self.env_path = env_path
        self.registry = registry
        self.now = now
        self.config = load_config(config_path, env_path)
        SECRET_FILTER.update(all_secrets(self.config))
        set_log_zone(self.config.settings.timezone)
        self.store = AuditStore.open(self.config.settings.audit_db)
        self.scheduler = CronScheduler(self.config.settings.timezone)
        self.workers: dict[str, ProjectWorker] = {}
        self.started_at = time.monotonic()
        self._wake = threading.Event()
        self._stopping = False
        self._reload_wanted = False
        self.http: HttpApi | None = None
        self.service_lock = ServiceLock(self.config.settings.backup_base_dir)
        self._migrated = False
        self._last_replay = time.monotonic()
        # job name -> its last failure, until it next succeeds (shown by /health)
        self.job_failures: dict[str, str] = {}
        self._health_cache: tuple[float, list[CheckResult]] | None = None
        self._metrics: Metrics | None = None  # made on the first scrape
        origin = Origin(self.config.settings.hostname, os.getpid())
        self.fleet = Fleet.open(self.config.settings.audit_db, origin)
        self.started_utc = now()
        self._last_fleet = float("-inf")  # the first tick sends a heartbeat
        self._fleet_cleaned = datetime.min.replace(tzinfo=UTC)

    # -- start-up
    def start_up(self) -> None:
        settings = self.config.settings
        make_private_dir(settings.backup_base_dir)
        self.service_lock.acquire()  # before anything: a second service changes nothing
        self._migrate()
        for report in Recovery(self.config, self.registry, self.store).run():
            level = logging.INFO if report.ok else logging.WARNING
            log.log(level, "recovery %s: %s", report.step, report.detail)
        self._schedule()
        pid_file(self.config).write_text(f"{os.getpid()}\n")

    def _migrate(self) -> bool:
        """Apply migrations; an unreachable audit DB does not stop the service:
        runs go to the fallback file until it is back (see ``replay_pending``)."""
        try:
            applied = self.store.migrate()
        except ConnectivityError as error:
            log.warning("%s; runs are kept in the fallback file until it is back", error.message)
            self._migrated = False
            return False
        log.info("audit store %s: %s", self.store.description, applied or "up to date")
        self._migrated = True
        return True

    def replay_pending(self) -> None:
        """While running: once the audit DB is reachable again, write what the
        fallback file holds (and deliver pending notifications)."""
        fallback = FallbackLog(self.config.settings.fallback_file)
        if not fallback.entries():
            return
        if not self._migrated and not self._migrate():
            return
        try:
            audit = replay_audit(self.store, fallback)
        except ConnectivityError:
            return
        notes = Notifier(self.config, self.registry).replay()
        log.info("fallback replayed: audit %s, notifications %s", audit, notes)

    # -- every job runs guarded: one failing job never stops the service
    def run_guarded(self, job: str, action: Callable[[], None], project: str = "*") -> bool:
        """Run ``action``; on any error log one line, remember it for /health and send
        a ``backup_warning`` where a channel works. True when it succeeded."""
        try:
            action()
        except Exception as error:
            message = mask(str(error) or type(error).__name__, self._secrets())
            self.job_failures[job] = message
            log.error("job %s failed: %s; the service keeps running", job, message)
            self._notify_job_failure(job, project, message)
            return False
        self.job_failures.pop(job, None)
        return True

    def _guarded(
        self, job: str, action: Callable[[], None], project: str = "*"
    ) -> Callable[[], None]:
        def guarded() -> None:
            self.run_guarded(job, action, project)

        return guarded

    def _secrets(self) -> list[str]:
        password = self.config.settings.audit_db.password
        return [*all_secrets(self.config), *([password.reveal()] if password else [])]

    def _notify_job_failure(self, job: str, project: str, message: str) -> None:
        local_now = self.now().astimezone(ZoneInfo(self.config.settings.timezone))
        event = job_failed_event(job, project, message, local_now)
        try:
            target = self.config.project(project) if project != "*" else None
            Notifier(self.config, self.registry).send(target, event)
        except Exception as error:  # the channel's own failure is only logged
            log.warning("job %s: failure notification not sent: %s", job, error)

    def _worker(self, project: ProjectSettings) -> ProjectWorker:
        name = project.name
        if name not in self.workers:
            run = self._guarded(f"backup {name}", lambda: self._run(name), name)
            self.workers[name] = ProjectWorker(name, run)
        return self.workers[name]

    def _run(self, name: str) -> None:
        config = self.config  # the config current when this run starts
        project = config.project(name)
        try:
            outcome = run_project(
                config, project, self.registry, self.store, wait_for_lock=True,
                progress=ProgressOptions(),  # a progress line every 30 s in the log file
            )  # fmt: skip
        except FleetLockHeld as held:  # a run of another host: skip, never queue behind it
            log.info("%s: scheduled run skipped: %s", name, held.message)
            return
        log.info("%s: scheduled run %s", name, outcome.record.status.value)

    def _trigger(self, project: ProjectSettings) -> Callable[[], None]:
        def trigger() -> None:
            log.info("%s: %s", project.name, self._worker(project).trigger())

        return trigger

    def _drill_trigger(self, project: ProjectSettings) -> Callable[[], None]:
        """A scheduled drill runs on a worker of its own (``drill:<name>``), so a long
        import never delays the scheduler or the project's backups."""
        name = project.name

        def drill() -> None:
            report = run_drill(self.config, self.config.project(name), self.registry, self.store)
            # Shown by /health until the next drill passes; drill_failed was sent already.
            if report.ok:
                self.job_failures.pop(f"restore drill {name}", None)
            else:
                self.job_failures[f"restore drill {name}"] = report.summary()

        def trigger() -> None:
            key = f"drill:{name}"
            if key not in self.workers:
                self.workers[key] = ProjectWorker(key, self._guarded(f"drill {name}", drill, name))
            log.info("%s: drill %s", name, self.workers[key].trigger())

        return trigger

    def _schedule(self) -> None:
        jobs: dict[str, tuple[str, Callable[[], None]]] = {
            f"project:{p.name}": (p.cron, self._guarded(f"schedule {p.name}", self._trigger(p)))
            for p in self.config.enabled_projects
            if p.cron
        }
        for p in self.config.enabled_projects:
            if p.drill and p.drill.cron:
                trigger = self._drill_trigger(p)
                jobs[f"drill:{p.name}"] = (p.drill.cron, self._guarded(f"drill {p.name}", trigger))
        summary = self._guarded(SUMMARY_JOB, self.send_summary)
        jobs[SUMMARY_JOB] = (self.config.settings.daily_summary_cron, summary)
        self.scheduler = CronScheduler(self.config.settings.timezone)
        self.scheduler.set_jobs(jobs, self.now())
        for job in self.scheduler.jobs.values():
            log.info("schedule %s: %s, next %s", job.name, job.cron, job.next_at)

    def send_summary(self) -> None:
        settings = self.config.settings
        now = self.now()
        runs = self.store.finished_since(now - timedelta(hours=24))
        drills = self.store.latest_drills(self.config.names)
        event = daily_summary_event(runs, now.astimezone(ZoneInfo(settings.timezone)), drills)
        Notifier(self.config, self.registry).send(None, event)

    # -- fleet mode (PostgreSQL audit store; audit/fleet.py, docs/fleet.md)
    def _claimed(self, job: CronJob) -> bool:
        """True when this replica runs ``job`` at this tick: always alone; in a fleet,
        when it is the first to claim the tick. With the store unreachable the tick
        runs here (a backup missed is worse than one made twice)."""
        if self.fleet is None or job.fired_at is None:
            return True
        origin = self.fleet.origin
        try:
            if self.store.claim_tick(job.name, job.fired_at, origin.hostname, origin.pid):
                return True
        except BackupctlError as error:
            log.warning("%s: tick not claimed (%s); running it here", job.name, error.message)
            return True
        log.info("%s at %s: run by another replica", job.name, job.fired_at.isoformat())
        return False

    def fleet_heartbeat(self) -> None:
        """Refresh this replica's row; mark other hosts' dead runs interrupted (their
        lock is free); forget claims and replicas older than a week."""
        assert self.fleet is not None
        now = self.now()
        origin = self.fleet.origin
        base_dir = str(self.config.settings.backup_base_dir)
        try:
            self.store.heartbeat(
                Replica(origin.hostname, origin.pid, base_dir, self.started_utc, now)
            )
        except ConnectivityError as error:
            # /health says the audit store is down; a notification every 15 s would not help
            log.warning("fleet heartbeat skipped: %s", error.message)
            return
        marked = Recovery(self.config, self.registry, self.store).other_hosts_orphans(self.fleet)
        if marked:
            log.warning("fleet: %s", marked)
        if now - self._fleet_cleaned >= timedelta(days=1):
            self._fleet_cleaned = now
            self.store.forget_claims(now - timedelta(days=7))
            self.store.forget_replicas(now - timedelta(days=7))

    # -- reload and stop
    def reload(self) -> None:
        try:
            config = load_config(self.config_path, self.env_path)
        except BackupctlError as error:
            log.error("config reload failed, keeping the old config: %s", error.message)
            return
        self.config = config
        SECRET_FILTER.update(all_secrets(config))
        set_log_zone(config.settings.timezone)
        self._schedule()
        log.info("config reloaded: %d project(s)", len(config.projects))

    def request_reload(self, *_: object) -> None:
        self._reload_wanted = True
        self._wake.set()

    def request_stop(self, *_: object) -> None:
        self._stopping = True
        self._wake.set()

    # -- the loop
    def tick(self) -> float:
        """Run what is due; return how long to sleep."""
        if self._reload_wanted:
            self._reload_wanted = False
            self.run_guarded("config reload", self.reload)
        now = self.now()
        for job in self.scheduler.due(now):
            if self._claimed(job):
                job.action()  # guarded when scheduled (``_schedule``)
        if self.fleet is not None and time.monotonic() - self._last_fleet >= FLEET_INTERVAL_SECONDS:
            self._last_fleet = time.monotonic()
            self.run_guarded("fleet heartbeat", self.fleet_heartbeat)
        if time.monotonic() - self._last_replay >= REPLAY_INTERVAL_SECONDS:
            self._last_replay = time.monotonic()
            self.run_guarded("fallback replay", self.replay_pending)
        pause = self.scheduler.seconds_until_next(self.now())
        return min(pause, FLEET_INTERVAL_SECONDS) if self.fleet is not None else pause

    def serve_forever(self, with_http: bool = True) -> None:
        self.start_up()
        settings = self.config.settings
        previous = self._install_signals()
        try:
            if with_http:
                self.http = HttpApi(settings.app_host, settings.app_port, self.route)
                self.http.start()
                log.info("HTTP on %s:%d", settings.app_host, self.http.port)
            while not self._stopping:
                try:
                    pause = self.tick()
                except Exception as error:  # last net: the jobs are guarded already
                    log.error("scheduler tick failed: %s; retrying in 60 s", error)
                    pause = 60.0
                self._wake.wait(pause)
                self._wake.clear()
        finally:
            self._restore_signals(previous)
            self.shutdown()

    def shutdown(self) -> None:
        log.info("stopping: waiting for running backups to finish")
        for worker in list(self.workers.values()):
            worker.join()
        if self.http is not None:
            self.http.stop()
        pid_file(self.config).unlink(missing_ok=True)
        self.service_lock.release()
        self.store.close()
        log.info("stopped")

    def _install_signals(self) -> dict[int, Any]:
        handlers: dict[int, Callable[[int, FrameType | None], None]] = {
            signal.SIGTERM: self.request_stop,
            signal.SIGINT: self.request_stop,
            signal.SIGHUP: self.request_reload,
        }
        return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # -- HTTP
    def route(self, path: str) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts == ["health"]:
            return self.health()
        if parts == ["metrics"]:
            return HTTPStatus.OK, self.metrics()
        try:
            if parts == ["status"]:
                return HTTPStatus.OK, self.status()
            if len(parts) == 2 and parts[0] == "status":
                if parts[1] not in self.config.names:
                    return HTTPStatus.NOT_FOUND, {"error": f"unknown project '{parts[1]}'"}
                return HTTPStatus.OK, self.project_status(parts[1])
        except BackupctlError as error:  # the audit store is down or not migrated
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "error": error.message,
                "failed_check": "audit database",
            }
        return HTTPStatus.NOT_FOUND, {"error": "not found"}

    def health(self) -> tuple[int, Any]:
        """The checks of ``backupctl health``: the audit store (reachable and migrated,
        one query) and disk every time; SSH and each project's readiness (tools, database
        login, GPG key, repository: a tool run each) at most once per
        ``HEALTH_CACHE_SECONDS``, so a scraper cannot fork restic or pg_dump per hit.
        Plus the service's own jobs that failed last time."""
        try:
            self.store.ensure_migrated()
            audit = CheckResult("audit database", "pass", self.store.description)
        except BackupctlError as error:
            audit = CheckResult("audit database", "fail", error.message)
        disk = disk_check(self.config.settings)
        now = time.monotonic()
        if self._health_cache is None or now - self._health_cache[0] >= HEALTH_CACHE_SECONDS:
            self._health_cache = (now, readiness_checks(self.config, self.registry))
        repositories = self._health_cache[1]
        drills: list[CheckResult] = []
        replicas: list[dict[str, Any]] = []
        if audit.status == "pass":
            try:
                drills = drill_checks(self.config, self.store, self.now())
                fleet = fleet_check(self.config, self.store, self.now())
                if fleet is not None:
                    drills.append(fleet)
                    since = self.now() - FLEET_WINDOW
                    replicas = [r.to_json() for r in self.store.replicas(since)]
            except BackupctlError as error:
                drills = [CheckResult("restore drill", "fail", error.message)]
        checks = [audit, disk, *repositories, *drills]
        healthy = all(c.status != "fail" for c in checks) and not self.job_failures
        body = {
            "status": "ok" if healthy else "degraded",
            "audit_db": {"status": audit.status, "detail": audit.detail},
            "disk": {"status": disk.status, "detail": disk.detail},
            "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in checks],
            "failed_jobs": dict(self.job_failures),
            **({"fleet": {"replicas": replicas}} if self.fleet is not None else {}),
            "uptime_seconds": int(time.monotonic() - self.started_at),
        }
        return (HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE), body

    def running(self, name: str) -> bool:
        """A backup of ``name`` runs: this service's, or one a CLI run holds the lock for."""
        worker = self.workers.get(name)
        if worker is not None and worker.busy:
            return True
        return held_by_live_process(self.config.settings.project_dir(name) / ".lock")

    def metrics(self) -> Text:
        from backupctl_core.runtime import metrics  # prometheus_client: only when scraped

        if self._metrics is None:
            self._metrics = metrics.Metrics(self.store, lambda: self.config.names, self.running)
        return Text(self._metrics.render(), metrics.CONTENT_TYPE)

    def _next_run(self, name: str) -> str | None:
        job = self.scheduler.jobs.get(f"project:{name}")
        return job.next_at.isoformat() if job else None

    def status(self) -> dict[str, Any]:
        latest = self.store.latest_per_project(self.config.names)
        return {
            "projects": [
                {
                    "name": name,
                    "next_run": self._next_run(name),
                    "running": bool(self.workers.get(name) and self.workers[name].busy),
                    "last_run": latest[name].to_json() if name in latest else None,
                }
                for name in self.config.names
            ]
        }

    def project_status(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "next_run": self._next_run(name),
            "runs": [r.to_json() for r in self.store.history(name, 10)],
        }
