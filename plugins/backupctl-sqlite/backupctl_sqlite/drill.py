"""Restore drills for SQLite: the dump's manifest and a scratch copy.

The dump is a whole database file (gzipped or not), so both halves are the same
work: unpack it to a private file and ask SQLite. The manifest counts the rows of
every table in the dump; the scratch database is that file in the drill's folder,
which must pass ``PRAGMA integrity_check`` to count as imported.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import tempfile
import zlib
from pathlib import Path

from backupctl_core import DumpManifest, PluginError


def _unpack(dump: Path, target: Path) -> None:
    """The database bytes of ``dump`` into ``target`` (0600)."""
    opener = gzip.open if dump.name.endswith(".gz") else open
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, opener(dump, "rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
    except (OSError, EOFError, zlib.error) as error:
        raise PluginError(f"cannot unpack {dump.name}: {error}", retryable=False) from None


def table_counts(database: Path) -> dict[str, int]:
    """Exact row counts of every table of ``database``, opened read-only."""
    db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        names = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        ]
        quoted = {name: '"' + name.replace('"', '""') + '"' for name in names}
        return {n: db.execute(f"SELECT count(*) FROM {q}").fetchone()[0] for n, q in quoted.items()}
    except sqlite3.Error as error:
        raise PluginError(f"cannot count rows: {error}", retryable=False) from None
    finally:
        db.close()


def dump_manifest(dump: Path, source_name: str) -> DumpManifest:
    fd, name = tempfile.mkstemp(suffix=".sqlite", dir=dump.parent)
    os.close(fd)
    copy = Path(name)
    try:
        _unpack(dump, copy)
        counts = table_counts(copy)
    finally:
        for leftover in (copy, *(Path(name + s) for s in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)
    return DumpManifest(
        engine="sqlite",
        database=source_name,
        tables=counts,
        engine_version=sqlite3.sqlite_version,
        dump_bytes=dump.stat().st_size,
    )


class SqliteScratchDatabase:
    """The dump unpacked into the drill's folder (``domain.drill.ScratchDatabase``)."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.path = workdir / f"{name}.sqlite"

    def create_and_import(self, dump_file: Path) -> None:
        _unpack(dump_file, self.path)
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = db.execute("PRAGMA integrity_check").fetchall()
            finally:
                db.close()
        except sqlite3.Error as error:
            raise PluginError(f"{dump_file.name}: {error}", retryable=False) from None
        if rows != [("ok",)]:
            raise PluginError(f"integrity_check: {rows[0][0]}", retryable=False)

    def table_counts(self) -> dict[str, int]:
        return table_counts(self.path)

    def check(self, query: str) -> bool:
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute(query).fetchone()
        except sqlite3.Error as error:
            raise PluginError(str(error), retryable=False) from None
        finally:
            db.close()
        return bool(row) and row[0] == 1

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
