"""Secrets masked by value in every log line, whatever key they came from.

``load_config`` collects the values (every secret-looking .env variable and every
value substituted into a hook); the CLI and the service hand them to
``SECRET_FILTER``, which sits on every log handler (console and file).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from backupctl_core.domain.settings import ProjectSettings
from backupctl_core.plugin_kit import mask

if TYPE_CHECKING:  # the CLI imports this module at start: no YAML loader for --help
    from backupctl_core.config.loader import AppConfig


class SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._values: frozenset[str] = frozenset()
        self._source: Callable[[], Iterable[str]] | None = None

    def update(self, values: Iterable[str]) -> None:
        self._values = frozenset(value for value in values if value)
        self._source = None

    def update_later(self, source: Callable[[], Iterable[str]]) -> None:
        """Take the values from ``source`` when the first line is logged: which config
        keys are secrets is the plugins' to say, and a command that logs nothing
        (``status``) then never loads a plugin."""
        self._source = source

    @property
    def values(self) -> frozenset[str]:
        source, self._source = self._source, None
        if source is not None:
            self._values = frozenset(value for value in source() if value)
        return self._values

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            message = record.getMessage()
            masked = mask(message, self.values)
            if masked != message:
                record.msg, record.args = masked, None
        return True


SECRET_FILTER = SecretFilter()


def all_secrets(config: AppConfig) -> set[str]:
    """Everything to mask in this config's logs: each project's own secrets and the
    values ``load_config`` found (secret-looking variables, values put into hooks)."""
    return {s for p in config.projects for s in project_secrets(p)} | set(config.secret_values)


def project_secrets(project: ProjectSettings) -> list[str]:
    """Every secret a project's errors could echo, to redact them."""
    from backupctl_core.plugins import secret_config_keys  # not at import: --help stays fast

    found = []
    if project.database and project.database.password:
        found.append(project.database.password.reveal())
    if project.restic.password:
        found.append(project.restic.password.reveal())
    for kind, block in (("notification", project.notification), ("monitor", project.monitor)):
        if block is not None:
            secrets = secret_config_keys(kind, block.type, block.config)
            found += [str(v) for k, v in block.config.items() if k in secrets and v]
    return found
