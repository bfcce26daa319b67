"""The ``.env`` file: read it, and turn it into ``GlobalSettings``."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from backupctl_core.domain.errors import ConfigError
from backupctl_core.domain.settings import AuditDbSettings, GlobalSettings, Secret, SshSettings


class Environment:
    """Variables from the .env file first, then the process environment."""

    def __init__(self, values: Mapping[str, str | None], path: Path) -> None:
        self.values = {k: v for k, v in values.items() if v is not None}
        self.path = path

    @classmethod
    def load(cls, path: Path, *, required: bool) -> Environment:
        if not path.exists():
            if required:
                raise ConfigError(f"{path}: env file not found")
            return cls({}, path)
        if not path.is_file():
            raise ConfigError(f"{path}: env file is not a regular file")
        return cls(dotenv_values(path), path)

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None:
            value = os.environ.get(name)
        return value if value not in (None, "") else None

    def _fail(self, name: str, expected: str, value: str) -> ConfigError:
        return ConfigError(f"{self.path}: {name}: expected {expected}, got {value!r}")

    def text(self, name: str, default: str) -> str:
        return self.get(name) or default

    def number(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise self._fail(name, "an integer", value) from None

    def decimal(self, name: str, default: float) -> float:
        value = self.get(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise self._fail(name, "a number", value) from None

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
        raise self._fail(name, "true or false", value)

    def file_path(self, name: str) -> Path | None:
        value = self.get(name)
        return Path(value) if value else None

    def secret(self, name: str) -> Secret | None:
        value = self.get(name)
        return Secret(value) if value else None


def _declared_env(env: Environment, kind: str, type_name: str) -> dict[str, str]:
    """The .env variables the plugin of ``type_name`` declares (``PluginType.env``) and
    their values; the plugin is looked up only when a type is set."""
    if type_name.lower() in ("", "none"):
        return {}
    from backupctl_core.plugins import declared_type  # entry points: only when needed

    declared = declared_type(kind, type_name.lower())
    names = declared.env.values() if declared else ()
    return {name: value for name in names if (value := env.get(name)) is not None}


def default_base_dir() -> Path:
    """Without BACKUP_BASE_DIR: the user's data folder (``$XDG_DATA_HOME/backupctl``,
    else ``~/.local/share/backupctl``), which a normal user can create. The Docker
    image sets ``BACKUP_BASE_DIR=/data/backups``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return root / "backupctl"


# A run's fleet lock carries "backupctl <host> <pid> <epoch>" in PostgreSQL's
# application_name, which keeps 63 bytes (audit/fleet.py).
MAX_HOSTNAME = 32


def default_hostname() -> str:
    """The machine's host name, its first label when the whole name is too long."""
    name = socket.gethostname() or "localhost"
    return name if len(name) <= MAX_HOSTNAME else name.split(".")[0][:MAX_HOSTNAME]


def global_settings(env: Environment) -> GlobalSettings:
    base_dir = env.file_path("BACKUP_BASE_DIR") or default_base_dir()
    return GlobalSettings(
        timezone=env.text("TIMEZONE", "Europe/Berlin"),
        backup_base_dir=base_dir,
        app_port=env.number("APP_PORT", 3100),
        app_host=env.text("APP_HOST", "127.0.0.1"),
        audit_db=AuditDbSettings(
            host=env.get("AUDIT_DB_HOST"),
            port=env.number("AUDIT_DB_PORT", 5432),
            name=env.text("AUDIT_DB_NAME", "backupctl_audit"),
            user=env.text("AUDIT_DB_USER", "backupctl"),
            password=env.secret("AUDIT_DB_PASSWORD"),
            sqlite_path=env.file_path("AUDIT_DB_SQLITE_PATH") or base_dir / ".audit" / "audit.db",
        ),
        ssh=SshSettings(
            host=env.get("HETZNER_SSH_HOST"),
            user=env.get("HETZNER_SSH_USER"),
            port=env.number("HETZNER_SSH_PORT", 23),
            key_path=env.file_path("HETZNER_SSH_KEY_PATH"),
            shared_connection=env.flag("HETZNER_SSH_SHARED_CONNECTION", True),
        ),
        restic_password=env.secret("RESTIC_PASSWORD"),
        notification_type=env.text("NOTIFICATION_TYPE", "none"),
        notification_env=_declared_env(env, "notification", env.text("NOTIFICATION_TYPE", "none")),
        retry_count=env.number("BACKUP_RETRY_COUNT", 3),
        retry_delay_ms=env.number("BACKUP_RETRY_DELAY_MS", 5000),
        encryption_enabled=env.flag("ENCRYPTION_ENABLED", False),
        encryption_type=env.text("ENCRYPTION_TYPE", "gpg"),
        gpg_recipient=env.get("GPG_RECIPIENT"),
        gpg_keys_dir=env.file_path("GPG_KEYS_DIR"),
        gpg_home=env.file_path("GPG_HOME"),
        daily_summary_cron=env.text("DAILY_SUMMARY_CRON", DEFAULT_SUMMARY_CRON),
        health_disk_min_free_gb=env.decimal("HEALTH_DISK_MIN_FREE_GB", 5),
        log_level=env.text("LOG_LEVEL", "INFO").upper(),
        log_dir=env.file_path("LOG_DIR"),
        log_max_size=env.text("LOG_MAX_SIZE", "10m"),
        log_max_files=env.number("LOG_MAX_FILES", 5),
        hostname=env.text("BACKUPCTL_HOSTNAME", default_hostname()),
    )


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
               "g": 1024**3, "gb": 1024**3}  # fmt: skip


def parse_size(text: str) -> int:
    """``10m`` → 10485760; ``500k``; ``1g``; a plain number is bytes."""
    match = re.fullmatch(r"\s*(\d{1,15})\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"LOG_MAX_SIZE: expected a size like 10m, got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


LOG_LEVELS = (  # one per line: the .env.example test reads ("NAME" as a variable
    "DEBUG",
    "INFO",
    "WARNING",
    "ERROR",
    "CRITICAL",
)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$"
)
DEFAULT_SUMMARY_CRON = "0 8 * * *"


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))


def valid_cron(expression: str) -> bool:
    # Imported here: croniter's import costs every command ~20 ms (loader.py says why).
    from croniter import croniter

    valid: bool = croniter.is_valid(expression)
    return valid


def settings_problems(settings: GlobalSettings) -> list[str]:
    """What the .env says that would only fail later, at run or at ``serve`` time.

    One line per problem, each naming its variable; ``load_config`` reports them
    all at once with exit code 3.
    """
    problems = []
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"TIMEZONE: unknown time zone {settings.timezone!r} (e.g. Europe/Berlin)")
    ports = {"APP_PORT": settings.app_port, "AUDIT_DB_PORT": settings.audit_db.port,
             "HETZNER_SSH_PORT": settings.ssh.port}  # fmt: skip
    for name, port in ports.items():
        if not 0 < port < 65536:
            problems.append(f"{name}: must be between 1 and 65535, got {port}")
    hosts = {"APP_HOST": settings.app_host, "AUDIT_DB_HOST": settings.audit_db.host,
             "HETZNER_SSH_HOST": settings.ssh.host}  # fmt: skip
    for name, host in hosts.items():
        if host is not None and not _valid_host(host):
            problems.append(f"{name}: {host!r} is not a host name or IP address")
    if not _HOSTNAME.fullmatch(settings.hostname) or len(settings.hostname) > MAX_HOSTNAME:
        problems.append(
            f"BACKUPCTL_HOSTNAME: {settings.hostname!r} is not a host name of at most"
            f" {MAX_HOSTNAME} letters, digits, dots and dashes"
        )
    cron = settings.daily_summary_cron
    if cron != DEFAULT_SUMMARY_CRON and (len(cron.split()) != 5 or not valid_cron(cron)):
        problems.append(f"DAILY_SUMMARY_CRON: {cron!r} is not a 5-field cron expression")
    if settings.log_level not in LOG_LEVELS:
        levels = ", ".join(LOG_LEVELS)
        problems.append(f"LOG_LEVEL: {settings.log_level!r} is not one of {levels}")
    try:
        if parse_size(settings.log_max_size) <= 0:
            problems.append("LOG_MAX_SIZE: must be more than 0")
    except ValueError as error:
        problems.append(str(error))
    bounded = {
        "LOG_MAX_FILES": (settings.log_max_files, 1, 1000),
        "BACKUP_RETRY_COUNT": (settings.retry_count, 0, 100),
        "BACKUP_RETRY_DELAY_MS": (settings.retry_delay_ms, 0, 3_600_000),
    }
    for name, (value, low, high) in bounded.items():
        if not low <= value <= high:
            problems.append(f"{name}: must be between {low} and {high}, got {value}")
    if not 0 <= settings.health_disk_min_free_gb < 1_000_000:
        problems.append(
            f"HEALTH_DISK_MIN_FREE_GB: must be 0 or more, got {settings.health_disk_min_free_gb:g}"
        )
    return problems
