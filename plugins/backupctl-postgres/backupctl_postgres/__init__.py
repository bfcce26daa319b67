"""PostgreSQL dumper plugin for backupctl; the hooks live in ``backupctl_postgres.plugin``."""

__version__ = "0.1.0"
