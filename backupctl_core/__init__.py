"""backupctl core: domain, plugin framework, config, audit store and CLI.

Plugins import what they need from here: the ``hookimpl`` marker and the
value types their hooks take and return.
"""

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
from backupctl_core.domain.errors import PluginError
from backupctl_core.domain.monitor import Ping, PingPhase
from backupctl_core.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "CacheInfo",
    "CheckResult",
    "DumpArtifact",
    "Ping",
    "PingPhase",
    "PluginError",
    "PluginType",
    "PruneResult",
    "Reclaim",
    "Snapshot",
    "SyncResult",
    "VerifyResult",
    "__version__",
    "hookimpl",
]
