"""A small SQLite database with real content, for end-to-end runs without a server."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def make_sqlite_db(path: Path, rows: int = 200) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
    db.executemany(
        "INSERT INTO items (name, data) VALUES (?, ?)",
        [(f"item {i} ✓", bytes([i % 256]) * 16) for i in range(rows)],
    )
    db.commit()
    db.close()
    return path


def sqlite_project(name: str, db_path: Path, repo: Path, **extra: object) -> dict[str, object]:
    project: dict[str, object] = {
        "name": name,
        "database": {"type": "sqlite", "name": str(db_path)},
        "restic": {"repository_path": str(repo), "password": "${RESTIC_PASSWORD}"},
    }
    project.update(extra)
    return project
