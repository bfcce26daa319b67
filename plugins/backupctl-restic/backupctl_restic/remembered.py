"""A project's retention series, remembered between runs so a run needs no listing.

Retention forgets per series (series.py), and finding the series takes the
project's snapshot list: one more restic process a run, which costs a key
derivation (~0.5 s of CPU, calibrated by restic at ``init``) and, over SFTP, a
channel. The series change only when a snapshot of a new kind appears, and
backupctl writes almost all of them itself, so it knows their tags. Each
``forget`` prints the snapshots it kept; their tags, plus those of the snapshots
written since, are all the next run needs.

A real listing is still taken when nothing is remembered, when the file cannot be
read, or when the last listing is older than ``REFRESH_SECONDS``: a series started
by another writer (the original tool still running beside backupctl, a second
host) is forgotten by policy within that time, and at once by ``backupctl prune``,
which always lists. Whatever is remembered, ``forget`` touches only the series its
tags name: nothing unattributed is removed. The file holds tags only (project
names, kinds, timestamps), mode 0600 in a 0700 folder beside restic's cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl_core.plugin_kit import make_private_dir, open_private_file
from backupctl_restic.repository import cache_dir

REFRESH_SECONDS = 7 * 24 * 3600.0  # the default prune_interval: a week
FORMAT = 1

Tags = tuple[str, ...]


@dataclass(frozen=True)
class Remembered:
    listed_at: datetime  # when restic last listed the repository's snapshots
    tags: tuple[Tags, ...]  # one entry per snapshot kept or written since


def file_of(settings: Any, repository: str, project: str) -> Path:
    digest = hashlib.sha256(f"{repository}\0{project}".encode()).hexdigest()[:32]
    return cache_dir(settings).parent / "backupctl-restic" / f"{digest}.json"


def recall(settings: Any, repository: str, project: str, now: datetime) -> Remembered | None:
    """What the last run left, if it is for this repository and project and its
    listing is younger than ``REFRESH_SECONDS``; else None (the caller lists)."""
    found = _read(file_of(settings, repository, project), repository, project)
    if found is None or (now - found.listed_at).total_seconds() >= REFRESH_SECONDS:
        return None
    if found.listed_at > now:  # a clock set back: do not trust it for a week
        return None
    return found


def remember(
    settings: Any, repository: str, project: str, listed_at: datetime, tags: Iterable[Tags]
) -> None:
    """Replace what is remembered: ``tags`` of every snapshot ``forget`` kept."""
    _write(file_of(settings, repository, project), repository, project, listed_at, tags)


def add_written(
    settings: Any, repository: str, project: str, known: Remembered | None, tags: Sequence[str]
) -> None:
    """A backup wrote a snapshot with ``tags``: added to what was ``known`` (recalled
    before it) at once, so that a run whose forget fails still leaves its new series
    known. Nothing is written when nothing was known (the next run lists anyway)."""
    if known is not None and tuple(tags) not in known.tags:
        path = file_of(settings, repository, project)
        _write(path, repository, project, known.listed_at, [*known.tags, tuple(tags)])


def _read(path: Path, repository: str, project: str) -> Remembered | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if (data["format"], data["repository"], data["project"]) != (FORMAT, repository, project):
            return None
        listed_at = datetime.fromisoformat(data["listed_at"])
        tags = tuple(tuple(str(tag) for tag in entry) for entry in data["tags"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if listed_at.tzinfo is None:
        return None
    return Remembered(listed_at=listed_at, tags=tags)


def _write(
    path: Path, repository: str, project: str, listed_at: datetime, tags: Iterable[Tags]
) -> None:
    """Best effort and atomic (a half-written file would read as nothing): a run
    that cannot remember lists next time, which costs time, not correctness."""
    unique = list(dict.fromkeys(tuple(entry) for entry in tags))
    document = {
        "format": FORMAT,
        "repository": repository,
        "project": project,
        "listed_at": listed_at.astimezone(UTC).isoformat(),
        "tags": [list(entry) for entry in unique],
    }
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        make_private_dir(path.parent)
        with open_private_file(partial) as out:
            out.write(json.dumps(document, indent=1).encode())
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
