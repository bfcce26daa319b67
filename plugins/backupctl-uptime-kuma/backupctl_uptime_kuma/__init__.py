"""Uptime Kuma monitor plugin for backupctl; the hooks live in ``backupctl_uptime_kuma.plugin``."""

__version__ = "0.1.0"
