"""backupctl core: domain, plugin framework, config, audit store and CLI.

The public surface for plugins: the ``hookimpl`` marker, the hook specifications
(``hookspecs``) and the value types their hooks take and return, all importable from
here. Plugins import nothing else of the core but ``backupctl_core.plugin_kit``
(helpers) and ``backupctl_core.testing`` (pytest fixtures); an import-linter
contract (pyproject.toml) keeps it so.
"""

from backupctl_core import hookspecs
from backupctl_core.domain.artifacts import (
    CacheInfo,
    CheckResult,
    DumpArtifact,
    PluginType,
    PruneResult,
    Reclaim,
    Snapshot,
    SyncResult,
    VerifyResult,
)
from backupctl_core.domain.drill import DumpManifest, ScratchDatabase
from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.events import Event, EventType
from backupctl_core.domain.monitor import Ping, PingPhase
from backupctl_core.domain.settings import (
    MASK,
    DatabaseSettings,
    DrillDatabaseSettings,
    GlobalSettings,
    MonitorSettings,
    NotificationSettings,
    ProjectSettings,
    ResticSettings,
    RetentionSettings,
    Secret,
    SshSettings,
    StorageSettings,
)
from backupctl_core.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "MASK",
    "CacheInfo",
    "CheckResult",
    "DatabaseSettings",
    "DrillDatabaseSettings",
    "DumpArtifact",
    "DumpManifest",
    "Event",
    "EventType",
    "GlobalSettings",
    "MonitorSettings",
    "NotificationSettings",
    "Ping",
    "PingPhase",
    "PluginError",
    "PluginType",
    "ProjectSettings",
    "PruneResult",
    "Reclaim",
    "ResticSettings",
    "RetentionSettings",
    "ScratchDatabase",
    "Secret",
    "Snapshot",
    "SshSettings",
    "StorageSettings",
    "SyncResult",
    "VerifyResult",
    "__version__",
    "hookimpl",
    "hookspecs",
]
