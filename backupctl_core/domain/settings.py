"""Project and global settings, as the pipeline and plugins see them.

These are plain attrs classes. Loading them from YAML and .env (and every
error message about a bad key) lives in ``backupctl_core.config``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen

MASK = "********"


@frozen
class Secret:
    """A password or token. Prints as a mask so it cannot leak by accident."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK})"


def mask(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``********``.

    Tools echo connection strings and option values in their errors: pass every
    message that may hold a password through this before it leaves the plugin.
    (The one masking function: the pipeline, the service and plugin_kit use it.)
    """
    values = {s.reveal() if isinstance(s, Secret) else s for s in secrets if s is not None}
    for value in sorted(values - {""}, key=len, reverse=True):  # "abcd" before "ab"
        text = text.replace(value, MASK)
    return text


@frozen
class DatabaseSettings:
    type: str
    host: str | None = None
    port: int | None = None
    name: str | None = None
    user: str | None = None
    password: Secret | None = None
    # The original tool's key: a dump running longer is killed and the run fails.
    dump_timeout_minutes: int | None = None
    # postgres: the pg_dump to use (its pg_restore beside it), instead of choosing one.
    pg_dump_path: str | None = None
    # postgres: keep the roles that own objects or hold grants in the dump's manifest,
    # so a restore onto another server can create them (owners and grants survive).
    include_roles: bool = False
    # postgres: dump (and restore) with this many parallel jobs: directory format,
    # one file per table (``pg_dump --format=directory --jobs``). None or 1: one file.
    jobs: int | None = None


@frozen
class CompressionSettings:
    enabled: bool = True


@frozen
class AssetSettings:
    paths: tuple[str, ...] = ()


@frozen
class ResticSettings:
    repository_path: str
    password: Secret | None = None
    snapshot_mode: Literal["combined", "separate"] = "combined"


INTERVAL_PATTERN = re.compile(r"(?=\d)(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?")
MAX_PRUNE_INTERVAL = timedelta(days=365)


def parse_interval(text: str) -> timedelta | None:
    """``7d``, ``12h``, ``1w3d``, ``0`` as a ``timedelta``; None if it is not one."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    match = INTERVAL_PATTERN.fullmatch(text)
    if match is None:
        return None
    weeks, days, hours = (int(part or 0) for part in match.groups())
    total = weeks * 168 + days * 24 + hours
    # Beyond the maximum: one hour more is enough to say so (timedelta would overflow).
    return timedelta(hours=min(total, MAX_PRUNE_INTERVAL // timedelta(hours=1) + 1))


@frozen
class RetentionSettings:
    """restic's forget policy (restic's meanings) plus the local dump cleanup.

    ``keep_daily`` keeps the *last* snapshot of each day: with several runs a day,
    ``keep_last``, ``keep_hourly`` or ``keep_within`` (a duration like ``2d``,
    ``1y5m7d2h``) keep the earlier ones. 0 / unset leaves a flag out.

    ``prune_interval``: ``forget`` runs after every backup, the expensive ``prune``
    that reclaims the space of forgotten snapshots at most this often (``0``: after
    every run that forgot something). The loader has checked it (``parse_interval``).
    """

    local_days: int = 7
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 6
    keep_within: str | None = None
    prune_interval: str = "7d"

    @property
    def prune_every(self) -> timedelta:
        return parse_interval(self.prune_interval) or timedelta(0)


@frozen
class EncryptionSettings:
    enabled: bool = False
    type: str = "gpg"
    recipient: str | None = None


@frozen
class HookSettings:
    pre_backup: str | None = None
    post_backup: str | None = None
    timeout_seconds: int = 300
    # The variables a hook gets besides BACKUPCTL_*, PATH, HOME, LANG, TZ...: nothing
    # else of backupctl's environment (which may hold every project's passwords).
    env: dict[str, str] = field(factory=dict)


@frozen
class VerificationSettings:
    enabled: bool = True


@frozen
class NotificationSettings:
    type: str
    config: dict[str, Any] = field(factory=dict)


@frozen
class MonitorSettings:
    type: str
    config: dict[str, Any] = field(factory=dict)


@frozen
class StorageSettings:
    """Where snapshots go: the storage plugin ``type`` and its ``config``. ``restic``
    (the default) keeps its settings in the project's ``restic:`` block."""

    type: str = "restic"
    config: dict[str, Any] = field(factory=dict)


@frozen
class DrillDatabaseSettings:
    """The server a restore drill imports into instead of the project's own."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: Secret | None = None


@frozen
class DrillSettings:
    """Restore drills (``backupctl drill``): where to import, what else must hold."""

    database: DrillDatabaseSettings | None = None
    # SQL the imported database must answer with true, e.g. "SELECT count(*) > 0 FROM orders".
    checks: tuple[str, ...] = ()
    cron: str | None = None  # serve drills on this schedule
    max_age_days: int | None = None  # status/health flag a project without a newer pass


@frozen(kw_only=True)
class ProjectSettings:
    """One entry of ``projects:`` after ``${VAR}`` resolution and defaults."""

    name: str
    enabled: bool = True
    cron: str | None = None
    timeout_minutes: int | None = None
    # The original tool connected its container to this network; here compose does.
    docker_network: str | None = None
    database: DatabaseSettings | None = None
    compression: CompressionSettings = CompressionSettings()
    assets: AssetSettings = AssetSettings()
    restic: ResticSettings = ResticSettings(repository_path="")  # storage type restic
    storage: StorageSettings = StorageSettings()
    retention: RetentionSettings = RetentionSettings()
    encryption: EncryptionSettings | None = None
    hooks: HookSettings = HookSettings()
    verification: VerificationSettings = VerificationSettings()
    notification: NotificationSettings | None = None
    monitor: MonitorSettings | None = None
    drill: DrillSettings | None = None

    @property
    def files_only(self) -> bool:
        return self.database is None

    @property
    def encryption_enabled(self) -> bool:
        return self.encryption is not None and self.encryption.enabled


@frozen
class AuditDbSettings:
    host: str | None = None
    port: int = 5432
    name: str = "backupctl_audit"
    user: str = "backupctl"
    password: Secret | None = None
    sqlite_path: Path | None = None


@frozen
class SshSettings:
    host: str | None = None
    user: str | None = None
    port: int = 23
    key_path: Path | None = None
    # One multiplexed connection per backup run for all its storage tool's calls.
    shared_connection: bool = True


@frozen
class GlobalSettings:
    """The .env file: global defaults and secrets (REFERENCE.md, .env table)."""

    timezone: str = "Europe/Berlin"
    backup_base_dir: Path = Path("/data/backups")
    app_port: int = 3100
    app_host: str = "127.0.0.1"
    audit_db: AuditDbSettings = AuditDbSettings()
    ssh: SshSettings = SshSettings()
    restic_password: Secret | None = None
    notification_type: str = "none"
    notification_env: dict[str, str] = field(factory=dict, repr=False)
    retry_count: int = 3
    retry_delay_ms: int = 5000
    encryption_enabled: bool = False
    encryption_type: str = "gpg"
    gpg_recipient: str | None = None
    gpg_keys_dir: Path | None = None
    gpg_home: Path | None = None
    daily_summary_cron: str = "0 8 * * *"
    health_disk_min_free_gb: float = 5
    log_level: str = "INFO"
    log_dir: Path | None = None
    log_max_size: str = "10m"
    log_max_files: int = 5
    # This replica's name in the audit store (``BACKUPCTL_HOSTNAME``, else the host's).
    hostname: str = "localhost"

    def project_dir(self, project: str) -> Path:
        return self.backup_base_dir / project

    @property
    def fallback_file(self) -> Path:
        return self.backup_base_dir / ".fallback-audit" / "fallback.jsonl"
