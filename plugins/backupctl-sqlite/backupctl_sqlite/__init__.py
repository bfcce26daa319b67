"""SQLite dumper plugin for backupctl; the hooks live in ``backupctl_sqlite.plugin``."""

__version__ = "0.1.0"
