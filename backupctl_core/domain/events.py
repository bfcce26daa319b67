"""Notification events and their texts, built once here for every channel.

The formats are SPEC's, to the emoji and the ``|`` separators; a notifier
plugin only transports ``Event.text`` (and ``Event.data`` for webhooks).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from attrs import field, frozen

from backupctl_core.domain.drill import DrillReport, DrillSummary
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.stages import describe_stage


class EventType(StrEnum):
    STARTED = "backup_started"
    SUCCESS = "backup_success"
    FAILED = "backup_failed"
    WARNING = "backup_warning"
    DAILY_SUMMARY = "daily_summary"
    DRILL_SUCCESS = "drill_success"
    DRILL_FAILED = "drill_failed"


@frozen
class Event:
    type: EventType
    project: str
    text: str
    data: dict[str, Any] = field(factory=dict)


def human_size(size: int | None) -> str:
    """``245 MB``: binary units, whole numbers from 10 up, one decimal below."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    if unit == "B" or value >= 10:
        return f"{round(value)} {unit}"
    return f"{value:.1f} {unit}"


def human_duration(ms: int | None) -> str:
    """``3m 12s``; ``1h 5m 0s``; ``42s``."""
    if ms is None:
        return "-"
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_time(moment: datetime) -> str:
    """``2026-03-18 00:00:00 CET``: local time of the configured zone."""
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _yes_no(flag: bool) -> str:
    return "Yes" if flag else "No"


def _plural(count: int | None, word: str) -> str:
    n = count or 0
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def prune_text(record: RunRecord, local_now: datetime) -> str:
    """``3 snapshots forgotten, space reclaimed``, ``… prune deferred until <when>``
    (in ``local_now``'s zone); ``3 snapshots`` when neither was recorded."""
    forgotten = _plural(record.prune_snapshots_removed, "snapshot")
    if record.pruned_at is not None:
        return f"{forgotten} forgotten, space reclaimed"
    if record.prune_deferred_until is not None:
        until = format_time(record.prune_deferred_until.astimezone(local_now.tzinfo))
        return f"{forgotten} forgotten, prune deferred until {until}"
    return forgotten


def _record_data(record: RunRecord, timestamp: datetime) -> dict[str, Any]:
    return {
        "run_id": record.id,
        "project_name": record.project_name,
        "status": record.status.value,
        "snapshot_id": record.snapshot_id,
        "dump_size_bytes": record.dump_size_bytes,
        "encrypted": record.encrypted,
        "verified": record.verified,
        "duration_ms": record.duration_ms,
        "timestamp": timestamp.isoformat(timespec="seconds"),
    }


def started_event(record: RunRecord, local_start: datetime) -> Event:
    text = f"🔄 Backup started — {record.project_name}\nTime: {format_time(local_start)}"
    return Event(EventType.STARTED, record.project_name, text, _record_data(record, local_start))


def missing_assets_text(missing: list[str]) -> str:
    """``1 asset path missing: /srv/x``; the run's warning, in every message about it."""
    noun = "asset path" if len(missing) == 1 else "asset paths"
    return f"{len(missing)} {noun} missing: {', '.join(missing)}"


def missing_assets_event(record: RunRecord, missing: list[str], local_now: datetime) -> Event:
    text = "\n".join(
        [
            f"⚠️ Backup warning — {record.project_name}",
            f"{missing_assets_text(missing)}",
            "The backup continues without them: they will not be in this snapshot.",
        ]
    )
    data = {**_record_data(record, local_now), "missing_asset_paths": list(missing)}
    return Event(EventType.WARNING, record.project_name, text, data)


def success_event(record: RunRecord, database_name: str | None, local_end: datetime) -> Event:
    lines = [
        f"✅ Backup completed — {record.project_name}",
        f"DB: {database_name or '-'} | Dump: {human_size(record.dump_size_bytes)}"
        f" | Encrypted: {_yes_no(record.encrypted)} | Verified: {_yes_no(record.verified)}",
        f"Snapshot: {record.snapshot_id or '-'} | Mode: {record.snapshot_mode}",
        f"New files: {record.files_new or 0} | Changed: {record.files_changed or 0}"
        f" | Added: {human_size(record.bytes_added or 0)}",
        f"Pruned: {prune_text(record, local_end)}"
        f" | Local cleaned: {_plural(record.local_files_cleaned, 'file')}",
        f"Duration: {human_duration(record.duration_ms)}",
    ]
    if record.warning_message:
        lines.append(f"⚠️ Warning: {record.warning_message}")
    data = _record_data(record, local_end)
    if record.warning_message:  # SPEC's payload, plus the warning only when there is one
        data["warning"] = record.warning_message
    return Event(EventType.SUCCESS, record.project_name, "\n".join(lines), data)


def failed_event(record: RunRecord, max_retries: int, local_end: datetime) -> Event:
    lines = [
        f"❌ Backup failed — {record.project_name}",
        f"Stage: {describe_stage(record.error_stage)} | Retry: {record.retry_count}/{max_retries}",
        f"Error: {record.error_message}",
    ]
    if record.dump_path is not None:
        lines.append(f"Dump file: {record.dump_path}")
    lines.append(f"Duration: {human_duration(record.duration_ms)}")
    return Event(
        EventType.FAILED, record.project_name, "\n".join(lines), _record_data(record, local_end)
    )


def timeout_warning_event(
    record: RunRecord, elapsed_ms: int, threshold_minutes: int, local_now: datetime
) -> Event:
    text = "\n".join(
        [
            f"⚠️ Backup timeout warning — {record.project_name}",
            f"Elapsed: {elapsed_ms // 60000}m | Timeout threshold: {threshold_minutes}m",
            f"Current stage: {describe_stage(record.current_stage)}",
            "Backup is still running — this is a warning, not a failure.",
        ]
    )
    return Event(EventType.WARNING, record.project_name, text, _record_data(record, local_now))


def job_failed_event(job: str, project: str, message: str, local_now: datetime) -> Event:
    """A service job (daily summary, fallback replay, reload, a scheduled backup that
    could not even start) failed; the service keeps running."""
    text = "\n".join(
        [
            f"⚠️ backupctl job failed — {job}",
            f"Time: {format_time(local_now)}",
            f"Error: {message}",
            "The service keeps running; the job runs again at its next scheduled time.",
        ]
    )
    data = {"job": job, "error": message, "timestamp": local_now.isoformat(timespec="seconds")}
    return Event(EventType.WARNING, project, text, data)


def drill_event(report: DrillReport, local_end: datetime) -> Event:
    """A restore drill's result: what was proven, or the first thing that was not."""
    passed = sum(1 for check in report.checks if check.status == "pass")
    if report.ok:
        lines = [f"✅ Restore drill passed — {report.project}"]
    else:
        first = report.failures[0]
        lines = [
            f"❌ Restore drill failed — {report.project}",
            f"Failed: {first.name} — {first.detail}",
        ]
    lines += [
        f"Snapshot: {report.snapshot_id or '-'} | Checks: {passed}/{len(report.checks)} passed"
        f" | Restored: {human_size(report.restored_bytes)}",
        f"Duration: {human_duration(report.duration_ms)}",
    ]
    data = {**report.as_json(), "timestamp": local_end.isoformat(timespec="seconds")}
    kind = EventType.DRILL_SUCCESS if report.ok else EventType.DRILL_FAILED
    return Event(kind, report.project, "\n".join(lines), data)


def daily_summary_event(
    records: list[RunRecord], day: datetime, drills: Mapping[str, DrillSummary] | None = None
) -> Event:
    """SPEC's summary; ``drills``: each project's newest restore drill, one line each
    after the runs (a backupctl extension)."""
    lines = [f"📊 Daily Backup Summary — {day.strftime('%Y-%m-%d')}"]
    for record in records:
        if record.status is RunStatus.SUCCESS:
            warning = f" — ⚠️ {record.warning_message}" if record.warning_message else ""
            lines.append(
                f"✅ {record.project_name} — {human_size(record.dump_size_bytes)}"
                f" — {human_duration(record.duration_ms)} — {record.snapshot_id or '-'}{warning}"
            )
        else:
            lines.append(
                f"❌ {record.project_name} — FAILED — {record.error_message or record.status.value}"
            )
    ok = sum(1 for r in records if r.status is RunStatus.SUCCESS)
    lines.append(f"Total: {ok}/{len(records)} successful | Next run: per project schedule")
    for project, drill in sorted((drills or {}).items()):
        lines.append(f"🔎 Last verified restore — {project}: {drill.text(day.tzinfo)}")
    return Event(EventType.DAILY_SUMMARY, "*", "\n".join(lines), {"runs": len(records), "ok": ok})
