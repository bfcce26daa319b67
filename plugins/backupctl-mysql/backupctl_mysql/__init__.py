"""MySQL/MariaDB dumper plugin for backupctl; the hooks live in ``backupctl_mysql.plugin``."""

__version__ = "0.1.0"
