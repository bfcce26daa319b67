"""Log files: ``{LOG_DIR or BACKUP_BASE_DIR/.logs}/backupctl-YYYY-MM-DD.log``,
rotated by size (``LOG_MAX_SIZE``), ``LOG_MAX_FILES`` kept."""

from __future__ import annotations

import logging
import os
from datetime import date
from logging.handlers import RotatingFileHandler
from pathlib import Path

from backupctl_core.config.env import parse_size
from backupctl_core.domain.settings import GlobalSettings
from backupctl_core.plugin_kit import make_private_dir
from backupctl_core.runtime.log_format import ZonedFormatter, set_log_zone
from backupctl_core.runtime.masking import SECRET_FILTER

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    handler.setFormatter(ZonedFormatter(_FORMAT, date=True))
    set_log_zone(settings.timezone)
    handler.addFilter(SECRET_FILTER)
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
