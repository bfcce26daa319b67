"""The series remembered between runs (remembered.py): the file, without restic."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backupctl_restic import remembered

from backupctl_core.domain.settings import GlobalSettings

REPO = "sftp:u@host:/backups/shop"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
OURS = ("project:shop", "backupctl:combined")
ORIGINAL = ("project:shop", "timestamp:20260101_020000", "db:postgres")


def _settings(tmp_path: Path) -> GlobalSettings:
    return GlobalSettings(backup_base_dir=tmp_path / "base")


def test_what_forget_kept_is_recalled_for_its_repository_and_project_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    remembered.remember(settings, REPO, "shop", NOW, [OURS, ORIGINAL, OURS])

    found = remembered.recall(settings, REPO, "shop", NOW + timedelta(days=1))

    assert found == remembered.Remembered(listed_at=NOW, tags=(OURS, ORIGINAL))
    assert remembered.recall(settings, REPO, "blog", NOW) is None
    assert remembered.recall(settings, "local:/elsewhere", "shop", NOW) is None
    path = remembered.file_of(settings, REPO, "shop")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not list(path.parent.glob("*.partial"))


def test_an_old_future_or_unreadable_memory_means_listing_again(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    remembered.remember(settings, REPO, "shop", NOW, [OURS])
    week = timedelta(seconds=remembered.REFRESH_SECONDS)

    assert remembered.recall(settings, REPO, "shop", NOW + week - timedelta(minutes=1))
    assert remembered.recall(settings, REPO, "shop", NOW + week) is None
    assert remembered.recall(settings, REPO, "shop", NOW - timedelta(hours=1)) is None  # clock back

    path = remembered.file_of(settings, REPO, "shop")
    for broken in ("", "{", "[]", json.dumps({"format": 99}), '{"format": 1, "repository": 1}'):
        path.write_text(broken)
        assert remembered.recall(settings, REPO, "shop", NOW) is None
    document = {"format": 1, "repository": REPO, "project": "shop",
                "listed_at": "2026-12-04T12:00:00", "tags": [list(OURS)]}  # fmt: skip
    path.write_text(json.dumps(document))  # no time zone: not trusted
    assert remembered.recall(settings, REPO, "shop", NOW) is None


def test_a_written_snapshot_joins_what_is_remembered_but_creates_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    separate = ("project:shop", "backupctl:assets:/srv/uploads")

    remembered.add_written(settings, REPO, "shop", None, separate)
    assert not remembered.file_of(settings, REPO, "shop").exists()  # next run lists

    remembered.remember(settings, REPO, "shop", NOW, [OURS])
    remembered.add_written(
        settings, REPO, "shop", remembered.recall(settings, REPO, "shop", NOW), separate
    )
    remembered.add_written(
        settings, REPO, "shop", remembered.recall(settings, REPO, "shop", NOW), OURS
    )
    found = remembered.recall(settings, REPO, "shop", NOW)
    assert found is not None and found.tags == (OURS, separate)
    assert found.listed_at == NOW  # still the time of the last real listing


def test_a_memory_that_cannot_be_written_is_only_a_lost_shortcut(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / ".cache").write_text("a file where a folder should be")

    remembered.remember(settings, REPO, "shop", NOW, [OURS])  # no exception

    assert remembered.recall(settings, REPO, "shop", NOW) is None
