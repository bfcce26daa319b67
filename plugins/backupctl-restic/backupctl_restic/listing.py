"""The snapshot list a run's retention needs, read while ``restic backup`` runs.

Retention (``forget`` per series, series.py) needs the project's snapshots: one more
restic process, which costs a key derivation (~0.5 s of CPU: restic calibrates its
KDF to that when it creates a repository) and, over SFTP, an SSH login. Started
beside the backup it runs on the other core, and the run does not wait for it.

The snapshot the backup writes is not in that list; its series is known from the
tags it was written with, so it is added from those. A stale or failed listing is
never used: ``forget`` lists again. Whatever the list, ``forget`` only touches the
series it names (series.py), so nothing unattributed is ever removed.

Mostly no listing runs at all: what the last run's forget kept is remembered
(remembered.py) and stands in for it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backupctl_core import Snapshot
from backupctl_core.plugin_kit import in_background
from backupctl_restic.remembered import Remembered

MAX_AGE_SECONDS = 3600.0  # a listing of a run that never reached retention goes stale

Key = tuple[str, str]  # (repository, project)


@dataclass
class _Pending:
    started: float
    snapshots: Future[list[Snapshot]]
    listed_at: datetime
    written: list[tuple[str, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class Listing:
    snapshots: list[Snapshot]  # the listed ones, then those written since
    listed_at: datetime  # when restic listed them (for a remembered list: back then)


_pending: dict[Key, _Pending] = {}
_lock = threading.Lock()


def start(
    key: Key, list_snapshots: Callable[[], list[Snapshot]], remembered: Remembered | None = None
) -> None:
    """List in a background thread, or take what is ``remembered``, unless a fresh
    listing for ``key`` is under way (separate mode backs up several times per run)."""
    with _lock:
        pending = _pending.get(key)
        if pending is not None and time.monotonic() - pending.started < MAX_AGE_SECONDS:
            return
        if remembered is None:
            listed = in_background(list_snapshots, "restic")
            _pending[key] = _Pending(time.monotonic(), listed, datetime.now(UTC))
            return
        at = remembered.listed_at
        known: Future[list[Snapshot]] = Future()
        known.set_result([Snapshot(id="", time=at, tags=t, paths=()) for t in remembered.tags])
        _pending[key] = _Pending(time.monotonic(), known, at)


def written(key: Key, tags: Sequence[str]) -> None:
    """The backup wrote a snapshot with ``tags``: part of the list ``take`` returns."""
    with _lock:
        pending = _pending.get(key)
        if pending is not None:
            pending.written.append(tuple(tags))


def discard(key: Key) -> None:
    """The backup failed: forget the listing, once its restic has exited (no process
    of a failed run outlives it)."""
    with _lock:
        pending = _pending.pop(key, None)
    if pending is not None:
        with contextlib.suppress(Exception):
            pending.snapshots.result()


def take(key: Key) -> Listing | None:
    """The listing started for ``key`` plus the snapshots written since; None when
    there is none, it is stale or it failed (the caller lists)."""
    with _lock:
        pending = _pending.pop(key, None)
    if pending is None or time.monotonic() - pending.started >= MAX_AGE_SECONDS:
        return None
    try:
        listed = pending.snapshots.result()
    except Exception:
        return None
    now = datetime.now(UTC)
    written = [Snapshot(id="", time=now, tags=tags, paths=()) for tags in pending.written]
    return Listing([*listed, *written], pending.listed_at)
