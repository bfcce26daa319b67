"""The run record: one row of the audit log, filled in as the pipeline goes."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from attrs import define, field


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
    prune_snapshots_removed: int | None = None
    local_files_cleaned: int | None = None
    error_stage: str | None = None
    error_message: str | None = None
    retry_count: int = 0
    duration_ms: int | None = None
    # Not persisted: shown in the failure message.
    dump_path: Path | None = field(default=None, eq=False)
