"""Healthchecks monitor plugin for backupctl; hooks in ``backupctl_healthchecks.plugin``."""

__version__ = "0.1.0"
