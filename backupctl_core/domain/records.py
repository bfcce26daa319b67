"""The run record: one row of the audit log, filled in as the pipeline goes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from attrs import define, field, fields

TIMES = ("started_at", "completed_at", "pruned_at", "prune_deferred_until")


class RunStatus(StrEnum):
    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"


@define
class RunRecord:
    """Mirrors SPEC's ``BackupLog`` columns (``created_at`` is the store's)."""

    project_name: str
    started_at: datetime
    snapshot_mode: str
    id: str = field(factory=lambda: str(uuid.uuid4()))
    status: RunStatus = RunStatus.STARTED
    current_stage: str | None = None
    completed_at: datetime | None = None
    dump_size_bytes: int | None = None
    encrypted: bool = False
    verified: bool = False
    snapshot_id: str | None = None
    files_new: int | None = None
    files_changed: int | None = None
    bytes_added: int | None = None
    prune_snapshots_removed: int | None = None  # forgotten by this run
    # When this run pruned (reclaimed the space of forgotten snapshots), or until when
    # it deferred that (``retention.prune_interval``); both None when nothing waited,
    # or the storage plugin did not say (``pruned_at``, ``prune_deferred_until``:
    # backupctl extensions).
    pruned_at: datetime | None = None
    prune_deferred_until: datetime | None = None
    local_files_cleaned: int | None = None
    error_stage: str | None = None
    error_message: str | None = None
    retry_count: int = 0
    duration_ms: int | None = None
    # The dump this run made (stored as ``dump_file``, a backupctl extension).
    dump_path: Path | None = None
    # What a successful run left out ("1 asset path missing: /srv/x"), or None
    # (stored as ``warning_message``, a backupctl extension).
    warning_message: str | None = None
    # The dump's manifest stored beside it (``manifest_file``, a backupctl extension).
    manifest_path: Path | None = None
    # Which replica ran it (fleet mode; ``hostname``/``pid``, backupctl extensions).
    hostname: str | None = None
    pid: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for the JSONL fallback (``from_json`` reads it back)."""
        data = {f.name: getattr(self, f.name) for f in fields(RunRecord)}
        data["status"] = self.status.value
        data["dump_path"] = str(self.dump_path) if self.dump_path else None
        data["manifest_path"] = str(self.manifest_path) if self.manifest_path else None
        for key in TIMES:
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        values = dict(data)
        values["status"] = RunStatus(values["status"])
        values["dump_path"] = Path(values["dump_path"]) if values.get("dump_path") else None
        manifest = values.get("manifest_path")
        values["manifest_path"] = Path(manifest) if manifest else None
        for key in TIMES:
            values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
        return cls(**values)


@define
class Replica:
    """A ``serve`` process of the fleet, as its heartbeat row says."""

    hostname: str
    pid: int
    base_dir: str
    started_at: datetime
    last_seen: datetime

    def to_json(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "pid": self.pid, "base_dir": self.base_dir,
                "started_at": self.started_at.isoformat(),
                "last_seen": self.last_seen.isoformat()}  # fmt: skip
