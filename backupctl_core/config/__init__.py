"""Loading ``config/projects.yml`` and ``.env`` into the domain's settings."""

from backupctl_core.config.loader import AppConfig, load_config

__all__ = ["AppConfig", "load_config"]
