"""Entries the original TypeScript backupctl left in the same fallback file.

It wrote ``{"id", "type": "audit"|"notification", "payload", "timestamp"}`` lines to
``{BACKUP_BASE_DIR}/.fallback-audit/fallback.jsonl``: an audit payload is its run
result (camelCase, nested dump/sync/prune/cleanup results), a notification payload
``{"notificationType", "projectName", "result"}``. They are replayed like ours, once:
the audit row is an upsert by run id. An entry that cannot be mapped (no UUID run id,
an unknown status) raises, so the replay keeps it and reports it as pending.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from backupctl_core.domain.records import RunRecord, RunStatus

ORIGINAL_PREFIX = "original-"  # FallbackLog's kind for them: original-audit, ...


def original_kind(entry: dict[str, Any]) -> str | None:
    """``original-audit`` / ``original-notification`` for the original's lines."""
    if "kind" in entry or "payload" not in entry or not isinstance(entry.get("type"), str):
        return None
    return ORIGINAL_PREFIX + entry["type"]


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def record_from_original(result: dict[str, Any]) -> RunRecord:
    """The original's run result as our run record; ``ValueError`` if it cannot be."""
    run_id = str(uuid.UUID(str(result["runId"])))  # "dry-run" / "failed" results: not runs
    started = _time(result.get("startedAt"))
    if started is None:
        raise ValueError("the result has no startedAt")
    dump = result.get("dumpResult") or {}
    sync = result.get("syncResult") or {}
    prune = result.get("pruneResult") or {}
    cleanup = result.get("cleanupResult") or {}
    removed = prune.get("snapshotsRemoved")
    completed = _time(result.get("completedAt"))
    return RunRecord(
        id=run_id,
        project_name=str(result["projectName"]),
        started_at=started,
        snapshot_mode=str(result.get("snapshotMode") or "combined"),
        status=RunStatus(str(result["status"]).lower()),
        current_stage=result.get("currentStage"),
        completed_at=completed,
        dump_size_bytes=dump.get("sizeBytes"),
        encrypted=bool(result.get("encrypted")),
        verified=bool(result.get("verified")),
        snapshot_id=sync.get("snapshotId"),
        files_new=sync.get("filesNew"),
        files_changed=sync.get("filesChanged"),
        bytes_added=sync.get("bytesAdded"),
        prune_snapshots_removed=removed,
        # It ran `restic forget --prune`, which prunes when it forgot something.
        pruned_at=(completed or started) if removed else None,
        local_files_cleaned=cleanup.get("filesRemoved"),
        error_stage=result.get("errorStage"),
        error_message=result.get("errorMessage"),
        retry_count=int(result.get("retryCount") or 0),
        duration_ms=result.get("durationMs"),
        dump_path=Path(dump["filePath"]) if dump.get("filePath") else None,
    )
