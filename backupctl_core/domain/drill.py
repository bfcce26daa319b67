"""Restore drills: prove that a snapshot imports into a working database.

A drill restores a snapshot into a scratch folder, imports its dump into a
scratch database (the dumper plugin's ``ScratchDatabase``), and compares what
came back with the dump's *manifest*: the tables and exact row counts the dumper
read from the dump it wrote. Each comparison is a named ``DrillCheck``; one
failed check fails the drill. The scratch database is dropped whatever happens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from attrs import define, field, frozen

from backupctl_core.domain.errors import BackupctlError, PluginError

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1
# PostgreSQL truncates identifiers at 63 bytes, MariaDB refuses more than 64.
MAX_DATABASE_NAME = 63
CheckStatus = Literal["pass", "fail"]


@frozen
class DumpManifest:
    """What a dump holds, written next to it and stored in the same snapshot.

    ``tables``: ``{name: exact row count}`` as the dumper names tables (PostgreSQL
    ``schema.table``), read from the dump itself, so the counts are the dump's
    own snapshot of the data whatever was written while it ran."""

    engine: str
    database: str
    tables: Mapping[str, int]
    engine_version: str = ""
    tool_version: str = ""
    dump_bytes: int = 0
    # What recreates the database itself (engine-specific keys: encoding, collation,
    # comment, settings, the roles owning objects); restore guides read it.
    database_options: Mapping[str, Any] = field(factory=dict)

    def to_json(self) -> str:
        data = {
            "version": MANIFEST_VERSION,
            "engine": self.engine,
            "database": self.database,
            "engine_version": self.engine_version,
            "tool_version": self.tool_version,
            "dump_bytes": self.dump_bytes,
            "tables": dict(sorted(self.tables.items())),
            "database_options": dict(self.database_options),
        }
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DumpManifest:
        try:
            data: Any = json.loads(text)
            tables = data["tables"]
            if not isinstance(tables, dict) or not all(
                isinstance(count, int) and count >= 0 for count in tables.values()
            ):
                raise ValueError("tables must map names to row counts")
            return cls(
                engine=str(data["engine"]),
                database=str(data["database"]),
                tables={str(name): count for name, count in tables.items()},
                engine_version=str(data.get("engine_version", "")),
                tool_version=str(data.get("tool_version", "")),
                dump_bytes=int(data.get("dump_bytes", 0)),
                database_options=dict(data.get("database_options") or {}),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise BackupctlError(f"unreadable dump manifest: {error}") from None


def manifest_path(dump: Path) -> Path:
    """``x.dump`` → ``x.dump.manifest.json``, next to the dump."""
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def is_manifest(name: str) -> bool:
    """A manifest, also encrypted (``….manifest.json.gpg``)."""
    return name.endswith(MANIFEST_SUFFIX) or MANIFEST_SUFFIX + "." in name


def scratch_database_name(database: str, now: datetime) -> str:
    """``<db>_drill_<yyyymmddhhmmss>``, the database part shortened to fit."""
    suffix = f"_drill_{now:%Y%m%d%H%M%S}"
    if "/" in database:  # a file (SQLite): its name, not its folders
        database = database.rsplit("/", 1)[-1].split(".", 1)[0] or "db"
    base = re.sub(r"[^A-Za-z0-9_]", "_", database)
    while len((base + suffix).encode()) > MAX_DATABASE_NAME:
        base = base[:-1]
    return base + suffix


def table_problems(expected: Mapping[str, int], imported: Mapping[str, int]) -> list[str]:
    """What differs between the manifest's tables and the imported ones, one line each."""
    problems = [f"table {name} is missing" for name in sorted(set(expected) - set(imported))]
    problems += [
        f"table {name} was not in the dump" for name in sorted(set(imported) - set(expected))
    ]
    for name in sorted(set(expected) & set(imported)):
        if expected[name] != imported[name]:
            problems.append(
                f"table {name}: {expected[name]} row(s) in the dump, {imported[name]} imported"
            )
    return problems


class ScratchDatabase(Protocol):
    """A throw-away database a dumper imports a dump into (``backupctl_scratch_database``)."""

    name: str

    def create_and_import(self, dump_file: Path) -> None:
        """Create the scratch database and import ``dump_file``, stopping at the first
        error; raise ``PluginError`` naming it."""

    def table_counts(self) -> dict[str, int]:
        """Exact row counts of every table, named as the manifest names them."""

    def check(self, query: str) -> bool:
        """Run an operator's query; True when its single value is true."""

    def drop(self) -> None:
        """Remove the scratch database (also when it was never created)."""


@frozen
class DrillCheck:
    name: str
    status: CheckStatus
    detail: str = ""


@define
class DrillReport:
    project: str
    snapshot_id: str
    started_at: datetime
    checks: list[DrillCheck] = field(factory=list)
    duration_ms: int = 0
    restored_bytes: int = 0
    scratch_database: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.status == "pass" for check in self.checks)

    @property
    def failures(self) -> list[DrillCheck]:
        return [check for check in self.checks if check.status != "pass"]

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(DrillCheck(name, "pass" if ok else "fail", detail))
        return ok

    def summary(self) -> str:
        """``passed (5 checks)`` or ``failed: rows: table x: 3 row(s) …``."""
        if self.ok:
            return f"passed ({len(self.checks)} checks)"
        first = self.failures[0] if self.failures else DrillCheck("drill", "fail", "no checks")
        return f"failed: {first.name}: {first.detail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "snapshot_id": self.snapshot_id,
            "started_at": self.started_at.isoformat(),
            "status": "success" if self.ok else "failed",
            "duration_ms": self.duration_ms,
            "restored_bytes": self.restored_bytes,
            "scratch_database": self.scratch_database,
            "checks": [
                {"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks
            ],
        }


@frozen
class DrillSummary:
    """A recorded drill, as ``status``, ``logs`` and the daily summary show it."""

    started_at: datetime
    ok: bool
    snapshot_id: str | None = None
    error_message: str | None = None
    last_success: datetime | None = None  # the newest passed drill (latest_drills)
    duration_ms: int | None = None

    def text(self, zone: Any) -> str:
        """``2026-12-03 08:00 CET, passed`` / ``…, failed: rows: table x …``."""
        when = self.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        return f"{when}, passed" if self.ok else f"{when}, failed: {self.error_message}"


def drill_overdue(
    max_age_days: int | None, latest: DrillSummary | None, now: datetime
) -> str | None:
    """Why a project's restores are not proven recently enough, or None."""
    if max_age_days is None:
        return None
    if latest is None or latest.last_success is None:
        return f"no passed restore drill yet (drill.max_age_days: {max_age_days})"
    age = now - latest.last_success
    if age > timedelta(days=max_age_days):
        return (
            f"last passed restore drill {age.days} day(s) ago (drill.max_age_days: {max_age_days})"
        )
    return None


def import_and_compare(
    report: DrillReport,
    scratch: ScratchDatabase | None,
    dump_file: Path,
    manifest: DumpManifest | None,
    operator_checks: Sequence[str],
    on_step: Callable[[str], None] = lambda step: None,
) -> None:
    """The database half of a drill: import, compare with the manifest, run the
    operator's checks; the scratch database is dropped whatever happened."""
    if scratch is None:
        report.add("import", False, "import not supported by this database plugin")
        return
    report.scratch_database = scratch.name
    try:
        on_step(f"importing {dump_file.name} into {scratch.name}")
        try:
            scratch.create_and_import(dump_file)
        except PluginError as error:
            report.add("import", False, error.message)
            return
        report.add("import", True, f"into {scratch.name}")
        counts = scratch.table_counts()
        total = sum(counts.values())
        if manifest is None:
            report.add("rows", False, "no manifest stored with this dump: nothing to compare")
        else:
            problems = table_problems(manifest.tables, counts)
            report.add(
                "rows",
                not problems,
                "; ".join(problems) or f"{len(counts)} table(s), {total} row(s) as in the dump",
            )
        for number, query in enumerate(operator_checks, start=1):
            try:
                passed = scratch.check(query)
                report.add(f"check {number}", passed, query if passed else f"false: {query}")
            except PluginError as error:
                report.add(f"check {number}", False, f"{query}: {error.message}")
    finally:
        try:
            scratch.drop()
        except PluginError as error:
            report.add("cleanup", False, f"scratch database {scratch.name} not dropped: {error}")
