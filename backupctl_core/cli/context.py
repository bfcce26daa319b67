"""What every command may need, loaded on first use and only then."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from backupctl_core.domain.settings import ProjectSettings

if TYPE_CHECKING:  # imported lazily: peewee/psycopg cost start-up time
    from backupctl_core.audit.store import AuditStore
    from backupctl_core.config.loader import AppConfig
    from backupctl_core.plugins import PluginRegistry


class CliContext:
    def __init__(self, config_path: Path, env_path: Path, env_explicit: bool) -> None:
        self.config_path = config_path
        self.env_path = env_path
        self.env_explicit = env_explicit
        self._config: AppConfig | None = None
        self._registry: PluginRegistry | None = None
        self._store: AuditStore | None = None
        self._tempdir_set = False
        self._previous_tempdir: str | None = None

    @property
    def config(self) -> AppConfig:
        if self._config is None:
            from backupctl_core.config.loader import load_config
            from backupctl_core.runtime.log_format import set_log_zone
            from backupctl_core.runtime.masking import SECRET_FILTER, all_secrets

            self._config = load_config(
                self.config_path, self.env_path, env_required=self.env_explicit
            )
            loaded = self._config
            SECRET_FILTER.update_later(lambda: all_secrets(loaded))
            set_log_zone(self._config.settings.timezone)
        return self._config

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is None:
            from backupctl_core.plugins import get_plugin_manager

            self._registry = get_plugin_manager(wanted=self._wanted_types())
            self._private_tempdir()  # plugins about to run tools: their scratch goes there
        return self._registry

    def _wanted_types(self) -> set[str] | None:
        """The plugin types the config names (the rest load when asked for), or None
        (all) when there is no config to read."""
        from backupctl_core.domain.errors import ConfigError
        from backupctl_core.plugins import named_types

        try:
            config = self.config
        except ConfigError:
            return None

        return named_types(config.projects, config.settings)

    def _private_tempdir(self) -> None:
        """Temporary files of every command that runs tools (restore, snapshots, health…)
        under ``{BACKUP_BASE_DIR}/.tmp/{pid}``, not /tmp, once the base dir exists (a
        read-only command never creates it)."""
        from backupctl_core.domain.errors import ConfigError

        if self._tempdir_set:
            return
        try:
            base_dir = self.config.settings.backup_base_dir
        except ConfigError:
            return  # `plugins` needs no config; a command that does reports the error itself
        if not base_dir.is_dir():
            return
        from backupctl_core.runtime.files import use_private_tempdir

        try:
            self._previous_tempdir = use_private_tempdir(base_dir)
            self._tempdir_set = True
        except OSError:
            pass  # an unwritable base dir: /tmp, as before; the command itself says more

    def store(self, *, migrated: bool = True) -> AuditStore:
        """The audit store; by default it must already be migrated."""
        if self._store is None:
            from backupctl_core.audit.store import AuditStore

            self._store = AuditStore.open(self.config.settings.audit_db)
        if migrated:
            self._store.ensure_migrated()
        return self._store

    def enable_file_log(self) -> None:
        """Commands that change things also log to the day's file under the base dir,
        and keep their temporary files there (``{BACKUP_BASE_DIR}/.tmp/{pid}``)."""
        import logging

        from backupctl_core.runtime.files import use_private_tempdir
        from backupctl_core.runtime.logs import add_file_log

        try:
            if not self._tempdir_set:
                self._previous_tempdir = use_private_tempdir(self.config.settings.backup_base_dir)
                self._tempdir_set = True
            add_file_log(self.config.settings)
        except (OSError, ValueError) as error:
            logging.getLogger("backupctl").warning("no log file: %s", error)

    def checked_project(self, name: str) -> ProjectSettings:
        """A project whose plugins are installed and whose config they accept."""
        from backupctl_core.domain.errors import ConfigError

        project = self.config.project(name)
        problems = self.registry.validate(project, self.config.settings)
        if problems:
            raise ConfigError(
                "\n".join(f"{self.config_path}: projects[{name}].{p}" for p in problems)
            )
        return project

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._tempdir_set:
            from backupctl_core.runtime.files import restore_tempdir

            restore_tempdir(self._previous_tempdir)
