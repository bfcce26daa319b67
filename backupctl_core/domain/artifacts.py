"""Values that travel between the pipeline and its plugins."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from attrs import frozen


@frozen
class PluginType:
    """What a plugin provides: ``kind`` is database, storage, notification or
    encryption; ``name`` is the value a project config uses (``postgres``)."""

    kind: str
    name: str


@frozen
class DumpArtifact:
    path: Path
    size_bytes: int
    format: str


@frozen
class VerifyResult:
    ok: bool
    detail: str = ""


@frozen
class SyncResult:
    snapshot_id: str
    files_new: int = 0
    files_changed: int = 0
    bytes_added: int = 0


class Reclaim(StrEnum):
    """What ``backupctl_prune`` does after forgetting snapshots (its ``reclaim``)."""

    NO = "no"  # forget only: the space stays used until a later prune
    IF_FORGOTTEN = "if-forgotten"  # prune if this forget removed snapshots
    YES = "yes"  # prune even if it removed none (earlier forgets' space; `backupctl prune`)


@frozen
class PruneResult:
    snapshots_removed: int = 0
    # Did the plugin prune (reclaim the space of forgotten snapshots)? None: it does
    # not say (a plugin written before ``reclaim``).
    space_reclaimed: bool | None = None


@frozen
class Snapshot:
    id: str
    time: datetime
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    size_bytes: int | None = None


@frozen
class CheckResult:
    """One line of a dry run or health check."""

    name: str
    status: str  # "pass" | "fail" | "warn"
    detail: str = ""


@frozen
class CacheInfo:
    """A project's local cache of its storage tool: where, how big, and whether it
    was just removed (``size_bytes`` is then what was freed)."""

    path: Path
    size_bytes: int
    cleared: bool = False
