"""How far a running backup is, while it runs.

On a terminal: one live line, redrawn every half second, for the stage that runs.
Elsewhere (a pipe, cron, ``docker exec`` without ``-t``): a plain line every
``interval`` seconds (30; ``BACKUPCTL_PROGRESS_INTERVAL`` for tests), and the same
line in the log file. What a line says:

* Dump, Encrypt: the size of the file being written and its rate;
* Sync: restic's ``--json`` status (percent, files, bytes, ETA), reported by the
  restic plugin through ``plugin_kit.report_progress``;
* any other stage: how long it has run.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from attrs import frozen

from backupctl_core.domain.events import human_duration, human_size
from backupctl_core.domain.stages import Stage
from backupctl_core.plugin_kit import Progress, progress_sink
from backupctl_core.runtime.log_format import FILE_ONLY

log = logging.getLogger("backupctl.progress")

INTERVAL_ENV = "BACKUPCTL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
LIVE_TICK = 0.5
GROWING_STAGES = frozenset({Stage.DUMP, Stage.ENCRYPT})


def interval_from_env() -> float:
    """``BACKUPCTL_PROGRESS_INTERVAL`` seconds (tests), else 30."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, ""))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


@frozen
class ProgressOptions:
    """Where progress goes: ``console`` (None: the log file only), ``live`` when that
    console is a terminal, and the plain lines' ``interval`` in seconds."""

    console: TextIO | None = None
    live: bool = False
    interval: float = DEFAULT_INTERVAL


class RunProgress:
    """Watches one run from a thread of its own; ``stage`` is called as stages begin,
    ``report`` by plugins (through ``plugin_kit.report_progress``)."""

    def __init__(
        self,
        project: str,
        options: ProgressOptions,
        *,
        dump_stem: Callable[[], Path | None],
        timezone: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.project = project
        self.options = options
        self.dump_stem = dump_stem
        self.zone = ZoneInfo(timezone)
        self.clock = clock
        self._lock = threading.Lock()
        self._stage: Stage | None = None
        self._stage_started = clock()
        self._status: Progress | None = None
        self._shown = False  # a live line is on the terminal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- what the run tells it
    def stage(self, stage: Stage) -> None:
        with self._lock:
            self._stage, self._stage_started, self._status = stage, self.clock(), None
            self._clear_locked()

    def report(self, progress: Progress) -> None:
        self._status = progress  # one assignment: the thread reads whole values

    # -- the line
    def line(self) -> str | None:
        """``shop: Dump (3/11): 120 MB so far at 4.0 MB/s``; None before the first stage."""
        stage = self._stage
        if stage is None:
            return None
        elapsed = max(self.clock() - self._stage_started, 0.0)
        detail = human_duration(int(elapsed * 1000))
        status = self._status
        if stage in GROWING_STAGES:
            size = self._growing_file_size(stage)
            if size is not None:
                detail = f"{human_size(size)} so far"
                if elapsed >= 1:
                    detail += f" at {human_size(int(size / elapsed))}/s"
        elif stage is Stage.SYNC and status is not None:
            detail = _status_text(status, elapsed)
        return f"{self.project}: {stage.progress()}: {detail}"

    def _growing_file_size(self, stage: Stage) -> int | None:
        """The size of the newest file of this run's dump (``.gpg`` when encrypting)."""
        stem = self.dump_stem()
        if stem is None:
            return None
        newest: tuple[float, int] | None = None
        try:
            for path in stem.parent.glob(stem.name + "*"):
                if stage is Stage.ENCRYPT and ".gpg" not in path.name:  # x.gpg.partial
                    continue
                info = path.stat()
                if newest is None or info.st_mtime >= newest[0]:
                    newest = (info.st_mtime, info.st_size)
        except OSError:  # a file replaced while we looked: next time
            return None
        return newest[1] if newest else None

    # -- the thread
    def __enter__(self) -> RunProgress:
        self._sink = progress_sink(self.report)
        self._sink.__enter__()
        self._console_filter = _ClearFirst(self)
        if self.options.live:
            for handler in logging.getLogger("backupctl").handlers:
                if not isinstance(handler, logging.FileHandler):  # the console's
                    handler.addFilter(self._console_filter)
        self._thread = threading.Thread(target=self._loop, name="backupctl-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for handler in logging.getLogger("backupctl").handlers:
            handler.removeFilter(self._console_filter)
        with self._lock:
            self._clear_locked()
        self._sink.__exit__(None, None, None)

    def _loop(self) -> None:
        interval = self.options.interval
        tick = LIVE_TICK if self.options.live else interval
        next_plain = self.clock() + interval
        while not self._stop.wait(min(tick, interval)):
            try:
                text = self.line()
                if text is None:
                    continue
                if self.options.live:
                    self._draw(text)
                if self.clock() >= next_plain:
                    next_plain = self.clock() + interval
                    self._plain(text)
            except Exception as error:  # progress is informative: never break a run
                log.debug("progress line failed: %s", error)

    def _draw(self, text: str) -> None:
        console = self.options.console
        if console is None:
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        with self._lock:
            if self._stop.is_set():
                return
            console.write("\r\x1b[K" + text[:width])
            console.flush()
            self._shown = True

    def _plain(self, text: str) -> None:
        log.info("%s", text, extra={FILE_ONLY: True})  # the log file; not the console
        console = self.options.console
        if console is not None and not self.options.live:
            stamp = datetime.now(UTC).astimezone(self.zone).isoformat(timespec="seconds")[11:]
            with self._lock:
                console.write(f"{stamp} {text}\n")
                console.flush()

    def clear(self) -> None:
        with self._lock:
            self._clear_locked()

    def _clear_locked(self) -> None:
        if self._shown and self.options.console is not None:
            self.options.console.write("\r\x1b[K")
            self.options.console.flush()
            self._shown = False


class _ClearFirst(logging.Filter):
    """On a terminal, a log line (a warning, the run's error) first wipes the live line."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, FILE_ONLY, False):
            self.progress.clear()
        return True


def _status_text(status: Progress, elapsed: float) -> str:
    """``45%, 12/30 files, 110 MB of 245 MB, ETA 1m 5s`` from what restic said."""
    parts = []
    if status.fraction is not None:
        parts.append(f"{status.fraction * 100:.0f}%")
    if status.total_files:
        parts.append(f"{status.files_done or 0}/{status.total_files} files")
    if status.total_bytes:
        parts.append(f"{human_size(status.bytes_done or 0)} of {human_size(status.total_bytes)}")
    remaining = status.seconds_remaining
    if remaining is None and status.fraction and 0 < status.fraction < 1 and elapsed >= 1:
        remaining = elapsed * (1 - status.fraction) / status.fraction
    if remaining is not None and (status.fraction or 0) < 1:
        parts.append(f"ETA {human_duration(int(remaining * 1000))}")
    return ", ".join(parts) or human_duration(int(elapsed * 1000))
