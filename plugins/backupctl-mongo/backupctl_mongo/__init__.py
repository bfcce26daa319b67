"""MongoDB dumper plugin for backupctl; the hooks live in ``backupctl_mongo.plugin``."""

__version__ = "0.1.0"
