"""Slack notifier plugin for backupctl; the hooks live in ``backupctl_slack.plugin``."""

__version__ = "0.1.0"
