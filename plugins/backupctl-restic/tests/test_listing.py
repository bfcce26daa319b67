"""The snapshot listing read beside ``restic backup`` (listing.py), without restic."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from backupctl_restic import listing
from backupctl_restic.remembered import Remembered

from backupctl_core import Snapshot

OLD = Snapshot(id="a1", time=datetime(2026, 1, 1, tzinfo=UTC), tags=("project:p",), paths=())


def test_take_returns_the_listing_and_what_was_written_since() -> None:
    key = ("local:/r", "p")
    release = threading.Event()
    calls = []

    def slow_list() -> list[Snapshot]:
        calls.append(1)
        release.wait(5)
        return [OLD]

    listing.start(key, slow_list)
    listing.start(key, slow_list)  # separate mode's second backup: the same listing
    listing.written(key, ["project:p", "backupctl:db"])
    listing.written(key, ["project:p", "backupctl:assets:x"])
    release.set()
    taken = listing.take(key)
    assert calls == [1] and taken is not None
    assert [s.tags for s in taken.snapshots] == [
        ("project:p",),
        ("project:p", "backupctl:db"),
        ("project:p", "backupctl:assets:x"),
    ]
    assert listing.take(key) is None  # taken once


def test_a_failed_stale_or_discarded_listing_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    key = ("local:/r", "q")

    def fails() -> list[Snapshot]:
        raise RuntimeError("no repository yet")

    listing.start(key, fails)
    assert listing.take(key) is None  # the caller lists again
    listing.start(key, lambda: [OLD])
    listing.discard(key)
    assert listing.take(key) is None
    listing.start(key, lambda: [OLD])
    monkeypatch.setattr(listing, "MAX_AGE_SECONDS", 0.0)
    assert listing.take(key) is None


def test_a_remembered_list_stands_in_for_restic_and_keeps_its_listing_time() -> None:
    key = ("local:/r", "m")
    back_then = datetime(2026, 12, 1, tzinfo=UTC)

    def must_not_run() -> list[Snapshot]:
        raise AssertionError("restic listed although the series were remembered")

    listing.start(key, must_not_run, Remembered(back_then, (("project:m", "backupctl:db"),)))
    listing.written(key, ["project:m", "backupctl:assets:x"])
    taken = listing.take(key)

    assert taken is not None and taken.listed_at == back_then
    assert [s.tags for s in taken.snapshots] == [
        ("project:m", "backupctl:db"),
        ("project:m", "backupctl:assets:x"),
    ]
