"""Log files: ``{LOG_DIR or BACKUP_BASE_DIR/.logs}/backupctl-YYYY-MM-DD.log``,
rotated by size (``LOG_MAX_SIZE``), ``LOG_MAX_FILES`` kept."""

from __future__ import annotations

import logging
import os
import re
from datetime import date
from logging.handlers import RotatingFileHandler
from pathlib import Path

from backupctl_core.domain.settings import GlobalSettings
from backupctl_core.plugin_kit import make_private_dir

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3,
          "gb": 1024**3}  # fmt: skip
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parse_size(text: str) -> int:
    """``10m`` → 10485760; ``500k``; ``1g``; a plain number is bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"LOG_MAX_SIZE: expected a size like 10m, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def log_dir(settings: GlobalSettings) -> Path:
    return settings.log_dir or settings.backup_base_dir / ".logs"


class PrivateRotatingFileHandler(RotatingFileHandler):
    """Every log file it opens, the rotated ones' successors included, is 0600
    whatever the umask: logs name projects, paths and errors."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def add_file_log(settings: GlobalSettings) -> Path:
    """Attach the day's log file to the ``backupctl`` logger; returns its path."""
    folder = log_dir(settings)
    make_private_dir(folder)
    path = folder / f"backupctl-{date.today().isoformat()}.log"
    logger = logging.getLogger("backupctl")
    for handler in logger.handlers:
        if isinstance(handler, RotatingFileHandler) and Path(handler.baseFilename) == path:
            return path
    handler = PrivateRotatingFileHandler(
        path,
        maxBytes=parse_size(settings.log_max_size),
        backupCount=max(settings.log_max_files - 1, 0),
        encoding="utf-8",
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(getattr(logging, settings.log_level, logging.INFO))
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or logging.WARNING, handler.level))
    _remove_old_days(folder, settings.log_max_files)
    return path


def _remove_old_days(folder: Path, keep: int) -> None:
    days = sorted(folder.glob("backupctl-????-??-??.log"))
    for old in days[:-keep] if keep > 0 else []:
        for rotated in folder.glob(old.name + "*"):
            rotated.unlink(missing_ok=True)
