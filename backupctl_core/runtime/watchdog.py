"""The timeout warning: one ``backup_warning`` when a run passes
``timeout_minutes``; the backup is not stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from backupctl_core.domain.events import Event, timeout_warning_event
from backupctl_core.domain.records import RunRecord

SECONDS_PER_MINUTE = 60.0  # tests shrink a minute


class TimeoutWatchdog:
    def __init__(
        self,
        threshold_minutes: int,
        notify: Callable[[Event], object],
        timezone: str,
    ) -> None:
        self.threshold_minutes = threshold_minutes
        self.notify = notify
        self.zone = ZoneInfo(timezone)
        self.fired = 0

    @contextmanager
    def watch(self, record: RunRecord) -> Iterator[None]:
        done = threading.Event()
        started = time.monotonic()
        minute = SECONDS_PER_MINUTE
        limit = self.threshold_minutes * minute

        def wait_and_warn() -> None:
            if done.wait(limit):
                return
            elapsed_ms = int((time.monotonic() - started) * 60000 / minute)
            now = datetime.now(UTC).astimezone(self.zone)
            self.fired += 1
            self.notify(timeout_warning_event(record, elapsed_ms, self.threshold_minutes, now))

        thread = threading.Thread(target=wait_and_warn, name="backupctl-timeout", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=30)
