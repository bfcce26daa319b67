"""Secrets masked by value in every log line, whatever key they came from.

``load_config`` collects the values (every secret-looking .env variable and every
value substituted into a hook); the CLI and the service hand them to
``SECRET_FILTER``, which sits on every log handler (console and file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from backupctl_core.domain.settings import ProjectSettings
from backupctl_core.plugin_kit import mask

if TYPE_CHECKING:  # the CLI imports this module at start: no YAML loader for --help
    from backupctl_core.config.loader import AppConfig


class SecretFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.values: frozenset[str] = frozenset()

    def update(self, values: Iterable[str]) -> None:
        self.values = frozenset(value for value in values if value)

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
    from backupctl_core.config.render import SECRET_KEYS  # not at import: --help stays fast

    found = []
    if project.database and project.database.password:
        found.append(project.database.password.reveal())
    if project.restic.password:
        found.append(project.restic.password.reveal())
    for block in (project.notification, project.monitor):
        if block is not None:
            found += [str(v) for k, v in block.config.items() if k in SECRET_KEYS and v]
    return found
