"""Reading restic's ``--json`` output into backupctl's values."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from backupctl_core import PluginError, Snapshot, SyncResult
from backupctl_core.plugin_kit import Progress, progress_wanted, report_progress

SHORT_ID_LENGTH = 8


class BackupProgress:
    """Fed ``backup --json`` stdout line by line; keeps only the summary.

    Status lines (several a second) go to ``report_progress`` when a run shows
    progress, and are dropped.
    """

    def __init__(self) -> None:
        self.summary: dict[str, Any] | None = None

    def feed(self, line: str) -> None:
        if '"status"' in line:
            if progress_wanted():
                _report_status(line)
            return
        if '"summary"' not in line:  # cheap filter for anything else
            return
        try:
            message = json.loads(line)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("message_type") == "summary":
            self.summary = message

    @property
    def snapshot_id(self) -> str:
        """The short id of the snapshot made, or ``?`` before the summary line."""
        snapshot_id = (self.summary or {}).get("snapshot_id")
        return str(snapshot_id)[:SHORT_ID_LENGTH] if snapshot_id else "?"

    def result(self) -> SyncResult:
        if self.summary is None or not self.summary.get("snapshot_id"):
            raise PluginError("restic backup finished without a summary line (no snapshot id)")
        return SyncResult(
            snapshot_id=self.snapshot_id,
            files_new=int(self.summary.get("files_new", 0)),
            files_changed=int(self.summary.get("files_changed", 0)),
            bytes_added=int(self.summary.get("data_added", 0)),
        )


def _report_status(line: str) -> None:
    """One ``{"message_type": "status", "percent_done": 0.4, ...}`` line, as Progress."""
    try:
        status = json.loads(line)
    except ValueError:
        return
    if not isinstance(status, dict) or status.get("message_type") != "status":
        return

    def number(key: str) -> Any:
        value = status.get(key)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    fraction, remaining = number("percent_done"), number("seconds_remaining")
    report_progress(
        Progress(
            fraction=float(fraction) if fraction is not None else None,
            files_done=int(number("files_done") or 0),
            total_files=_int_or_none(number("total_files")),
            bytes_done=int(number("bytes_done") or 0),
            total_bytes=_int_or_none(number("total_bytes")),
            seconds_remaining=float(remaining) if remaining is not None else None,
        )
    )


def _int_or_none(value: float | None) -> int | None:
    return int(value) if value is not None else None


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: str) -> datetime:
    """restic's RFC 3339 time (nanoseconds, ``Z`` or offset) as an aware datetime."""
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


def parse_snapshots(data: Any) -> list[Snapshot]:
    """``snapshots --json`` → ``Snapshot``s, newest first."""
    snapshots = [
        Snapshot(
            id=str(item.get("short_id") or item["id"][:SHORT_ID_LENGTH]),
            time=parse_time(item["time"]),
            tags=tuple(item.get("tags") or ()),
            paths=tuple(item.get("paths") or ()),
            # restic >= 0.17 stores a summary in the snapshot; 0.14 has no size.
            size_bytes=(item.get("summary") or {}).get("total_bytes_processed"),
        )
        for item in data or []
    ]
    snapshots.sort(key=lambda snapshot: snapshot.time, reverse=True)
    return snapshots


def count_removed(data: Any) -> int:
    """Snapshots removed, from ``forget --json`` (a list of groups with ``remove`` lists)."""
    return sum(len(group.get("remove") or []) for group in data or [])


_TOTAL_PRUNE = re.compile(r"^total prune:\s+\d+ blobs / ([\d.]+) (B|KiB|MiB|GiB|TiB)\s*$")
_BINARY_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def bytes_pruned(lines: Sequence[str]) -> int | None:
    """The bytes ``restic prune`` removed, from its summary (``total prune: 7 blobs /
    5.723 MiB``, rounded by restic); None when there is no such line."""
    for line in lines:
        found = _TOTAL_PRUNE.match(line.strip())
        if found:
            return round(float(found[1]) * _BINARY_UNITS[found[2]])
    return None


def kept_tags(data: Any) -> list[tuple[str, ...]]:
    """The tags of every snapshot ``forget --json`` kept (its groups' ``keep`` lists)."""
    return [
        tuple(snapshot.get("tags") or ())
        for group in data or []
        for snapshot in group.get("keep") or []
    ]


def describe_json_error(item: dict[str, Any]) -> str:
    """``open /x: permission denied`` from restic's JSON error line (0.14 and later)."""
    error = item.get("error")
    if isinstance(error, dict):
        if "message" in error:
            return str(error["message"])
        op, path, err = error.get("Op"), error.get("Path"), error.get("Err")
        if isinstance(err, int):
            err = os.strerror(err).lower()
        if op and path:
            return f"{op} {path}: {err}"
    return str(error or item.get("item") or item)
