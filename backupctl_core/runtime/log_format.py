"""Log timestamps in TIMEZONE, with their offset: the tables and messages use that
zone, so the log lines next to them must too (they were the machine's UTC)."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

_FORMATTERS: list[ZonedFormatter] = []

# A LogRecord attribute (``extra={FILE_ONLY: True}``): for the log file, not the
# console (run's progress lines, which the console shows its own way).
FILE_ONLY = "backupctl_file_only"


def not_file_only(record: logging.LogRecord) -> bool:
    """A console handler's filter: leave out the records meant for the log file."""
    return not getattr(record, FILE_ONLY, False)


class ZonedFormatter(logging.Formatter):
    """``%(asctime)s`` as ``06:15:09+01:00`` (``date=True``: with the date) in the
    zone ``set_log_zone`` last named; the machine's zone until then."""

    def __init__(self, fmt: str, *, date: bool) -> None:
        super().__init__(fmt)
        self.date = date
        self.zone: ZoneInfo | None = None
        _FORMATTERS.append(self)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, tz=self.zone).astimezone(self.zone)
        text = moment.isoformat(timespec="seconds")
        return text.replace("T", " ") if self.date else text.split("T", 1)[1]


def set_log_zone(timezone: str) -> None:
    """Every formatter made here writes times in ``timezone`` from now on."""
    zone = ZoneInfo(timezone)
    for formatter in _FORMATTERS:
        formatter.zone = zone
