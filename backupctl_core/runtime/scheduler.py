"""Cron schedules (croniter) in the configured time zone, and per-project
workers that queue a run behind a running one instead of skipping it or
running it twice."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from attrs import define
from croniter import croniter

log = logging.getLogger("backupctl.scheduler")


@define
class CronJob:
    name: str
    cron: str
    action: Callable[[], None]
    next_at: datetime
    # The scheduled time ``due`` last fired it for: the same on every replica with
    # the same cron and zone, so the fleet claims ``(name, fired_at)`` once.
    fired_at: datetime | None = None


class CronScheduler:
    """Which jobs are due; time comes from outside, so tests control the clock."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.jobs: dict[str, CronJob] = {}

    def _next(self, cron: str, after: datetime) -> datetime:
        local = after.astimezone(self.zone)
        nxt: datetime = croniter(cron, local).get_next(datetime)
        return nxt

    def set_jobs(self, jobs: dict[str, tuple[str, Callable[[], None]]], now: datetime) -> None:
        """Replace every job (start-up and ``config reload``)."""
        self.jobs = {
            name: CronJob(name, cron, action, self._next(cron, now))
            for name, (cron, action) in jobs.items()
        }

    def due(self, now: datetime) -> list[CronJob]:
        """Jobs whose time has come; each moves on to its next time after ``now``,
        so a tick missed while the machine slept fires once, not once per tick."""
        ready = [job for job in self.jobs.values() if job.next_at <= now]
        for job in ready:
            job.fired_at = job.next_at
            job.next_at = self._next(job.cron, now)
        return ready

    def seconds_until_next(self, now: datetime, ceiling: float = 60.0) -> float:
        if not self.jobs:
            return ceiling
        soonest = min(job.next_at for job in self.jobs.values())
        return max(0.0, min(ceiling, (soonest - now).total_seconds()))


class ProjectWorker:
    """Runs one project's backups on a thread of its own, one at a time.

    ``trigger`` while a run is going queues exactly one more run; triggers
    while one is already queued are merged into it.
    """

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name = name
        self._run = run
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queued = False

    @property
    def busy(self) -> bool:
        with self._guard:
            return self._thread is not None

    def trigger(self) -> str:
        with self._guard:
            if self._thread is not None:
                if self._queued:
                    return "already queued"
                self._queued = True
                return "queued behind the running backup"
            self._thread = threading.Thread(
                target=self._loop, name=f"backup-{self.name}", daemon=True
            )
            self._thread.start()
            return "started"

    def _loop(self) -> None:
        while True:
            try:
                self._run()
            except Exception:  # a crashing run must not kill the schedule
                log.exception("%s: scheduled run failed", self.name)
            with self._guard:
                if not self._queued:
                    self._thread = None
                    return
                self._queued = False

    def join(self, timeout: float | None = None) -> None:
        with self._guard:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
