"""Heartbeats for an external monitor (a dead man's switch such as Uptime Kuma or
healthchecks.io): one ``Ping`` when a run starts and one when it ends.

The monitor alerts when the pings stop or say ``failure``; a monitor plugin only
transports the ``Ping`` the core builds here.
"""

from __future__ import annotations

from enum import StrEnum

from attrs import frozen

from backupctl_core.domain.events import human_duration
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.stages import describe_stage

MAX_MESSAGE_LENGTH = 200  # monitors show one short line


class PingPhase(StrEnum):
    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"


@frozen
class Ping:
    """What a monitor plugin is told about one run."""

    phase: PingPhase
    run_id: str
    duration_ms: int | None = None  # None at start
    message: str = ""


def short(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def start_ping(record: RunRecord) -> Ping:
    return Ping(PingPhase.START, record.id, None, "started")


def result_ping(record: RunRecord) -> Ping:
    """``OK - 3m 12s`` or ``FAIL - Sync (6/11): <error>``; the record's error is redacted."""
    if record.status is RunStatus.SUCCESS:
        text = f"OK - {human_duration(record.duration_ms)}"
        if record.warning_message:
            text += f" - warning: {record.warning_message}"
        return Ping(PingPhase.SUCCESS, record.id, record.duration_ms, short(text))
    error = record.error_message or "unknown error"
    text = f"FAIL - {describe_stage(record.error_stage)}: {error}"
    return Ping(PingPhase.FAILURE, record.id, record.duration_ms, short(text))
