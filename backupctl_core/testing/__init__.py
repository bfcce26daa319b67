"""backupctl's test kit for plugin authors (and for backupctl's own tests).

Installed with ``pip install "backupctl-core[testing]"``; its fixtures load by
themselves through the ``pytest11`` entry point (``backupctl_core.testing.pytest_plugin``):

- ``backupctl_workspace``: a config folder, ``.env`` and backup folder in ``tmp_path``;
  ``write_config([...])``, ``write_env(KEY=value)``, and ``cli("run", "shop")`` runs
  any ``backupctl`` command in-process (installed plugins, real tools) and returns
  click's ``Result``. A whole run, restore or drill of your plugin in three lines.
- ``restic_repository``: a fresh local repository path (initialised on first use).
- ``pg_scram`` / ``pg_scram_db``: a private PostgreSQL cluster with password auth, and a
  fresh role and database on it; ``mariadb`` / ``mariadb_db`` the same for MariaDB;
  ``sftp_server``: a real sshd serving SFTP (needs root and openssh-server).

Helpers: ``plugin_manager(plugin)`` (a pluggy manager holding the hookspecs and only
the plugins under test: a misspelled hook argument fails here), ``make_project(...)``
and ``make_settings(...)`` (real settings objects with test defaults).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from backupctl_core import hookspecs
from backupctl_core.domain.settings import (
    DatabaseSettings,
    GlobalSettings,
    ProjectSettings,
    ResticSettings,
    Secret,
)

__all__ = ["BackupctlWorkspace", "make_project", "make_settings", "plugin_manager"]


def plugin_manager(*plugins: ModuleType | object) -> pluggy.PluginManager:
    """A plugin manager with backupctl's hookspecs and exactly ``plugins`` registered
    (validated: an unknown hook or argument raises ``PluginValidationError``)."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for plugin in plugins:
        manager.register(plugin)
    manager.check_pending()
    return manager


def make_project(
    name: str = "shop",
    *,
    database: DatabaseSettings | None = None,
    repository: str | Path = "/tmp/backupctl-test-unused-repository",
    restic_password: str | None = None,
    **fields: Any,
) -> ProjectSettings:
    """A ``ProjectSettings`` as ``projects.yml`` would give it; ``fields`` are any
    other of its attributes (``notification=``, ``monitor=``, ``assets=``, …)."""
    restic = ResticSettings(
        repository_path=str(repository),
        password=Secret(restic_password) if restic_password else None,
    )
    return ProjectSettings(name=name, database=database, restic=restic, **fields)


def make_settings(base_dir: Path | None = None, **fields: Any) -> GlobalSettings:
    """A ``GlobalSettings`` as ``.env`` would give it (UTC, backups under ``base_dir``)."""
    values: dict[str, Any] = {"timezone": "UTC", **fields}
    if base_dir is not None:
        values["backup_base_dir"] = base_dir
    return GlobalSettings(**values)


class BackupctlWorkspace:
    """``projects.yml``, ``.env`` and a backup folder below ``root``; ``cli`` runs
    ``backupctl`` in-process with them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_dir = root / "backups"
        self.config_path = root / "config" / "projects.yml"
        self.env_path = root / ".env"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            "BACKUP_BASE_DIR": str(self.base_dir),
            "TIMEZONE": "UTC",
            "BACKUP_RETRY_DELAY_MS": "0",
            "RESTIC_PASSWORD": "backupctl-test-repository",
        }
        self.write_env()

    def write_env(self, **values: str) -> None:
        self.env.update(values)
        self.env_path.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def write_config(self, projects: list[dict[str, Any]]) -> None:
        from ruamel.yaml import YAML

        with self.config_path.open("w") as handle:
            YAML().dump({"projects": projects}, handle)

    def cli_args(self) -> list[str]:
        return ["--config", str(self.config_path), "--env-file", str(self.env_path)]

    def cli(self, *args: str) -> Any:
        """Run ``backupctl <args>`` in-process; return click's ``Result`` (``exit_code``,
        ``stdout``, ``stderr``)."""
        from click.testing import CliRunner

        from backupctl_core.cli.main import cli

        return CliRunner().invoke(cli, [*self.cli_args(), *args], catch_exceptions=False)
