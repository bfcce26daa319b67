"""A backupctl workspace in a temp dir: config file, .env, base dir."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig, load_config
from backupctl_core.plugins import PluginRegistry, get_plugin_manager

RECORDING_ENTRY_POINTS = [
    EntryPoint("recording", "tests.support.recording_plugin:database", "backupctl"),
    EntryPoint("restic", "tests.support.recording_plugin:storage", "backupctl"),
    EntryPoint("recording-notify", "tests.support.recording_plugin:notifier", "backupctl"),
    EntryPoint("recording-monitor", "tests.support.recording_plugin:monitor", "backupctl"),
]


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base_dir = root / "backups"
        self.config_path = root / "config" / "projects.yml"
        self.env_path = root / ".env"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            "BACKUP_BASE_DIR": str(self.base_dir),
            "TIMEZONE": "Europe/Berlin",
            "BACKUP_RETRY_DELAY_MS": "0",
        }
        self.write_env()

    def write_env(self, **extra: str) -> None:
        self.env.update(extra)
        self.env_path.write_text("".join(f"{k}={v}\n" for k, v in self.env.items()))

    def write_config(self, projects: list[dict[str, Any]]) -> None:
        with self.config_path.open("w") as handle:
            YAML().dump({"projects": projects}, handle)

    def load(self) -> AppConfig:
        return load_config(self.config_path, self.env_path)

    def cli_args(self) -> list[str]:
        return ["--config", str(self.config_path), "--env-file", str(self.env_path)]

    def store(self) -> AuditStore:
        store = AuditStore.open(self.load().settings.audit_db)
        store.migrate()
        return store


def recording_registry() -> PluginRegistry:
    return get_plugin_manager(RECORDING_ENTRY_POINTS, builtins=())
