"""Webhook notifier plugin for backupctl; the hooks live in ``backupctl_webhook.plugin``."""

__version__ = "0.1.0"
