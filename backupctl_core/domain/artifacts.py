"""Values that travel between the pipeline and its plugins."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from attrs import field, frozen


def _keys(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(keys)


@frozen
class PluginType:
    """What a plugin provides: ``kind`` is database, storage, notification, monitor or
    encryption; ``name`` is the value a project config uses (``postgres``).

    A notifier or monitor also declares its settings here, so the core names none:
    ``env`` maps its config keys to the .env variables that fill them when a project
    leaves them out (``{"webhook_url": "SLACK_WEBHOOK_URL"}``), and ``secrets`` names
    the config keys that hold credentials (masked everywhere; a token in a URL is one).
    Neither is part of the type's identity (equality, hashing)."""

    kind: str
    name: str
    env: dict[str, str] = field(factory=dict, eq=False, hash=False)
    secrets: frozenset[str] = field(default=frozenset(), converter=_keys, eq=False, hash=False)


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
    # How many bytes the prune removed from the repository, where the storage tool
    # reports it (restic's prune summary); None: not known.
    bytes_freed: int | None = None


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
