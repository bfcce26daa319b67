"""Local files of a project: dump names, asset paths, cleanup of old dumps."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from backupctl_core.plugin_kit import make_private_dir, open_private_file


class ProjectFiles:
    """``{BACKUP_BASE_DIR}/{project}/{project}_backup_{YYYYMMDD_HHmmss}_{4 hex}.{ext}``."""

    def __init__(self, project_dir: Path, project: str, timezone: str) -> None:
        self.project_dir = project_dir
        self.project = project
        self.zone = ZoneInfo(timezone)
        self.last_stem: Path | None = None  # the dump being written, for progress lines

    def stamp(self, started_at: datetime) -> str:
        """The run's start in a dump's name: ``YYYYMMDD_HHmmss`` in the configured zone."""
        return started_at.astimezone(self.zone).strftime("%Y%m%d_%H%M%S")

    def new_dump_stem(self, started_at: datetime) -> Path:
        make_private_dir(self.project_dir)
        stamp = self.stamp(started_at)
        self.last_stem = self.project_dir / f"{self.project}_backup_{stamp}_{secrets.token_hex(2)}"
        return self.last_stem

    def stamp_of(self, dump: Path) -> str | None:
        """The start stamp in a dump name this version writes, else None (another
        tool's file, or an operator's)."""
        pattern = rf"{re.escape(self.project)}_backup_(\d{{8}}_\d{{6}})_[0-9a-f]{{4}}\."
        match = re.match(pattern, dump.name)
        return match.group(1) if match else None

    def dumps(self) -> list[Path]:
        if not self.project_dir.is_dir():
            return []
        return sorted(
            p
            for p in self.project_dir.glob(f"{self.project}_backup_*")
            if p.is_file() or (p.is_dir() and not p.is_symlink())  # a directory-format dump
        )

    def split_existing(self, paths: Sequence[str]) -> tuple[list[Path], list[str]]:
        present: list[Path] = []
        missing: list[str] = []
        for raw in paths:
            path = Path(raw).absolute()
            if path.exists():
                present.append(path)
            else:
                missing.append(raw)
        return present, missing

    def write_private(self, path: Path, text: str) -> None:
        with open_private_file(path) as handle:
            handle.write(text.encode())

    def cleanup(self, older_than_days: int, now: datetime) -> int:
        """Remove dumps (and their manifests) modified more than ``older_than_days`` ago."""
        cutoff = (now - timedelta(days=older_than_days)).timestamp()
        removed = 0
        for path in self.dumps():
            if path.stat().st_mtime < cutoff:
                remove_dump(path)
                removed += 1
        return removed


def remove_dump(path: Path) -> None:
    """A dump file, or a directory-format dump (a folder of files)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


TEMP_ROOT = ".tmp"


def use_private_tempdir(base_dir: Path) -> str | None:
    """Send this process's temporary files (restic's scratch folder, a tool's option
    file with a password) to ``{BACKUP_BASE_DIR}/.tmp/{pid}`` (0700) instead of /tmp:
    what a killed process leaves behind is then ours to find and remove
    (``stale_tempdirs``), not readable in a shared /tmp forever."""
    folder = make_private_dir(base_dir / TEMP_ROOT / str(os.getpid()))
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    atexit.register(shutil.rmtree, folder, True)  # a clean exit leaves nothing
    return previous  # for ``restore_tempdir``: in-process callers (tests) put it back


def restore_tempdir(previous: str | None) -> None:
    """Put the previous temp folder back and remove this process's (empty when every
    tool cleaned up), and ``.tmp`` itself once nothing else is in it: a command that
    writes nothing (a dry run) leaves nothing."""
    folder = Path(tempfile.tempdir) if tempfile.tempdir else None
    tempfile.tempdir = previous
    if folder is not None and folder.name == str(os.getpid()) and folder.parent.name == TEMP_ROOT:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()  # only when empty: other processes' folders stay


def stale_tempdirs(base_dir: Path, alive: Callable[[int], bool]) -> list[Path]:
    """Temp folders of processes that are gone (``alive(pid)`` is False)."""
    root = base_dir / TEMP_ROOT
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.isdigit() and not alive(int(p.name)))
