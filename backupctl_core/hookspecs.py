"""The ports of backupctl as pluggy hook specifications.

Every database engine, storage backend, notification channel, encryption
method and heartbeat monitor is a plugin implementing some of these. Call them
with keyword arguments only; an implementation may accept a subset of the
arguments, so a hook can gain an argument later without breaking any plugin.

The core calls each hook only on the plugins a project enables (its database
type, its storage, its notifier, its monitor), never on every installed plugin.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # the value types live in the domain; plugins import them from backupctl_core
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
    from backupctl_core.domain.events import Event
    from backupctl_core.domain.monitor import Ping
    from backupctl_core.domain.settings import (
        GlobalSettings,
        MonitorSettings,
        NotificationSettings,
        ProjectSettings,
    )

PROJECT_NAME = "backupctl"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def backupctl_plugin_types() -> list[PluginType]:
    """Return the ``PluginType``s this plugin provides, e.g. database ``postgres``."""


@hookspec
def backupctl_validate_config(project: ProjectSettings, settings: GlobalSettings) -> list[str]:
    """Return a list of problems with the project's config for this plugin (strings).

    A line starting with ``warning: `` is only printed by ``config validate``: the
    config works, but not as the operator may think."""


@hookspec(firstresult=True)
def backupctl_dump(
    project: ProjectSettings, settings: GlobalSettings, target_stem: Path
) -> DumpArtifact:
    """Dump the project's database to ``target_stem`` plus the plugin's extension;
    return a ``DumpArtifact``. The file must be 0600."""


@hookspec(firstresult=True)
def backupctl_verify(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> VerifyResult:
    """Check that a dump is readable; return a ``VerifyResult``."""


@hookspec(firstresult=True)
def backupctl_encrypt(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> DumpArtifact:
    """Encrypt a dump; return the encrypted ``DumpArtifact`` (plaintext removed)."""


@hookspec(firstresult=True)
def backupctl_run_session(
    project: ProjectSettings, settings: GlobalSettings
) -> AbstractContextManager[object] | None:
    """Return a context manager the core holds open for one whole backup run (entered
    after the pre-backup hook, before the dump; left after the last step), or None.
    For what is worth opening once per run and sharing between the plugin's calls,
    e.g. restic's one SSH connection. It may only make the run faster: a failure to
    open must be swallowed (the calls then work as without it)."""


@hookspec(firstresult=True)
def backupctl_sync(
    project: ProjectSettings, settings: GlobalSettings, paths: Sequence[Path], tags: Sequence[str]
) -> SyncResult:
    """Store ``paths`` as one snapshot with ``tags``; return a ``SyncResult``."""


@hookspec(firstresult=True)
def backupctl_prune(
    project: ProjectSettings, settings: GlobalSettings, reclaim: Reclaim
) -> PruneResult:
    """Apply the project's retention to its snapshots (forget), then reclaim the space
    of forgotten snapshots (prune) as ``reclaim`` (a ``Reclaim``) says: ``no``,
    ``if-forgotten`` (only if this call forgot some), ``yes`` (even if not). Return a
    ``PruneResult`` with ``space_reclaimed`` saying whether it pruned and, where the
    storage tool reports it, ``bytes_freed``."""


@hookspec(firstresult=True)
def backupctl_unlock(project: ProjectSettings, settings: GlobalSettings) -> str:
    """Remove stale repository locks (crash recovery); return a short description."""


@hookspec(firstresult=True)
def backupctl_snapshots(project: ProjectSettings, settings: GlobalSettings) -> list[Snapshot]:
    """Return the project's snapshots (``Snapshot``s), newest first."""


@hookspec(firstresult=True)
def backupctl_restore(
    project: ProjectSettings,
    settings: GlobalSettings,
    snapshot_id: str,
    target: Path,
    include: Sequence[str] | None,
) -> list[Path]:
    """Extract snapshot ``snapshot_id`` (or ``latest``) into the empty folder ``target``,
    only the paths in ``include`` when given; return the restored files (``Path``s)."""


@hookspec(firstresult=True)
def backupctl_decompress(
    project: ProjectSettings, settings: GlobalSettings, path: Path
) -> Path | None:
    """Turn a restored dump into a plain file next to it (SQL, archive); return its
    ``Path``, or None when this plugin does not handle that file."""


@hookspec(firstresult=True)
def backupctl_restore_guide(
    project: ProjectSettings, settings: GlobalSettings, dump_file: Path, snapshot_id: str
) -> list[str]:
    """Return the shell commands (strings) that import ``dump_file`` into a fresh
    database; the operator supplies the password (the tool's prompt, never a value).

    Name the new database after the snapshot (``<db>_restored_<snapshot_id>``) so a
    second restore never meets the first; read the manifest beside the dump
    (``plugin_kit.manifest_beside``) to recreate the database's own settings; every
    import must stop at its first error, and refuse a target that has objects."""


@hookspec(firstresult=True)
def backupctl_decrypt(project: ProjectSettings, settings: GlobalSettings, path: Path) -> Path:
    """Decrypt an encrypted dump next to it; return the plaintext ``Path``."""


@hookspec
def backupctl_notify(
    project: ProjectSettings | None,
    settings: GlobalSettings,
    event: Event,
    notification: NotificationSettings,
) -> None:
    """Deliver an ``Event`` with the channel settings ``notification`` (type + config);
    raise on failure (the core writes it to the fallback). ``project`` is None for
    the daily summary."""


@hookspec
def backupctl_monitor_ping(
    project: ProjectSettings, settings: GlobalSettings, monitor: MonitorSettings, ping: Ping
) -> None:
    """Report ``ping`` (a ``Ping``: phase ``start``, ``success`` or ``failure``, run id,
    duration, short message) to the monitor ``monitor`` (type + config); raise on
    failure. A failed ping is logged, never retried, and never fails the backup."""


@hookspec
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    """Return ``CheckResult``s for dry run and health (reachability, credentials)."""


@hookspec(firstresult=True)
def backupctl_cache(project: ProjectSettings, settings: GlobalSettings, clear: bool) -> CacheInfo:
    """Return the project's local storage cache as a ``CacheInfo`` (path and size);
    with ``clear``, remove that cache (only the project's own) and say so in ``cleared``."""


@hookspec(firstresult=True)
def backupctl_passthrough(
    project: ProjectSettings, settings: GlobalSettings
) -> tuple[dict[str, str], list[str]]:
    """Return ``(env, argv)``: the environment (``dict[str, str]``, secrets only here)
    and base argv (no secrets) to run the storage tool on the project's repository;
    the caller appends the tool's command and arguments to ``argv``."""


@hookspec(firstresult=True)
def backupctl_manifest(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> DumpManifest | None:
    """Describe the dump just made as a ``DumpManifest``: its tables and their exact
    row counts as the dump holds them (read from the dump, or counted by the server
    in the very snapshot the dump was taken from), plus engine and tool versions.
    Stored next to the dump; restore drills compare an import with it. None: this
    dumper writes no manifest."""


@hookspec(firstresult=True)
def backupctl_scratch_database(
    project: ProjectSettings, settings: GlobalSettings, name: str, workdir: Path
) -> ScratchDatabase:
    """Return a ``ScratchDatabase`` called ``name`` that a restore drill imports a dump
    into (on the project's server, or on the ``drill.database`` server when set;
    SQLite: a file in ``workdir``). Creating nothing yet; ``drop()`` removes it."""


@hookspec(firstresult=True)
def backupctl_snapshot_stats(
    project: ProjectSettings, settings: GlobalSettings, snapshot_id: str
) -> tuple[int, int]:
    """Return ``(files, bytes)``: what a full restore of ``snapshot_id`` writes, so a
    restore drill can tell that everything came back."""
