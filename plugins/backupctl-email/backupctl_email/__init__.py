"""Email (SMTP) notifier plugin for backupctl; the hooks live in ``backupctl_email.plugin``."""

__version__ = "0.1.0"
