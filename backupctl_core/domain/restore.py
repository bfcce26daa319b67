"""Which snapshots (and which paths in them) a restore extracts.

Combined mode: one snapshot holds the dump and the assets; ``--only`` narrows
the paths. Separate mode: the dump and each asset folder are snapshots of
their own, told apart by tag; ``--only`` picks snapshots, and ``latest`` means
the newest snapshot of each tag set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import PurePath, PurePosixPath
from typing import Literal, TypeVar

from attrs import field, frozen

from backupctl_core.domain.artifacts import Snapshot
from backupctl_core.domain.drill import is_manifest
from backupctl_core.domain.errors import BackupctlError

Only = Literal["db", "assets"] | None
P = TypeVar("P", bound=PurePath)


@frozen
class RestoreStep:
    snapshot_id: str
    include: tuple[str, ...] | None  # None: the whole snapshot
    # The snapshot paths this step must bring back (to tell the user what is missing).
    expected: tuple[str, ...] = field(default=(), eq=False)


def is_dump_path(path: str, project: str) -> bool:
    """A dump of ``project`` (its manifest, stored beside it, is not a dump)."""
    name = PurePosixPath(path).name
    return name.startswith(f"{project}_backup_") and not is_manifest(name)


def dumps_among(paths: Iterable[P], project: str) -> list[P]:
    """The dumps among restored files: a dump file itself, or the folder of a
    directory-format dump (``….dir``) that a restored file lies in."""
    found: set[P] = set()
    for path in paths:
        for candidate in (path, *path.parents):
            if is_dump_path(candidate.name, project):
                found.add(candidate)
                break
    return sorted(found)


def is_backup_file(path: str, project: str) -> bool:
    """A dump or its manifest: what ``--only db`` restores."""
    return PurePosixPath(path).name.startswith(f"{project}_backup_")


def _kind(snapshot: Snapshot) -> str:
    """combined | db | assets, from the backupctl:* tag."""
    for tag in snapshot.tags:
        if tag == "backupctl:combined":
            return "combined"
        if tag == "backupctl:db":
            return "db"
        if tag.startswith("backupctl:assets:"):
            return "assets"
    return "combined"


def _find(snapshots: Sequence[Snapshot], ref: str) -> Snapshot:
    matches = [s for s in snapshots if s.id.startswith(ref) or ref.startswith(s.id)]
    if not matches:
        raise BackupctlError(f"no snapshot '{ref}' for this project (see `backupctl snapshots`)")
    if len({s.id for s in matches}) > 1:
        ids = ", ".join(s.id for s in matches)
        raise BackupctlError(f"snapshot id '{ref}' is ambiguous ({ids}): give more characters")
    return matches[0]


def _narrow(snapshot: Snapshot, only: Only, project: str) -> RestoreStep:
    if only is None or _kind(snapshot) != "combined":
        return RestoreStep(snapshot.id, None, tuple(snapshot.paths))
    wanted = tuple(p for p in snapshot.paths if is_backup_file(p, project) == (only == "db"))
    if not wanted:
        raise BackupctlError(f"snapshot {snapshot.id} has no {only} paths")
    return RestoreStep(snapshot.id, wanted, wanted)


def plan_restore(
    snapshots: Sequence[Snapshot], ref: str, only: Only, project: str
) -> list[RestoreStep]:
    """Snapshots are newest first, as the storage plugin lists them."""
    if not snapshots:
        raise BackupctlError(f"project '{project}' has no snapshots yet")
    if ref != "latest":
        snapshot = _find(snapshots, ref)
        kind = _kind(snapshot)
        if only is not None and kind not in ("combined", only):
            raise BackupctlError(f"snapshot {snapshot.id} holds {kind}, not {only}")
        return [_narrow(snapshot, only, project)]
    newest = snapshots[0]
    if _kind(newest) == "combined":
        return [_narrow(newest, only, project)]
    # Separate mode: the newest snapshot of every tag set.
    seen: set[tuple[str, ...]] = set()
    steps = []
    for snapshot in snapshots:
        key = tuple(sorted(snapshot.tags))
        if key in seen or _kind(snapshot) == "combined":
            continue
        seen.add(key)
        if only is None or _kind(snapshot) == only:
            steps.append(RestoreStep(snapshot.id, None, tuple(snapshot.paths)))
    if not steps:
        raise BackupctlError(f"no {only} snapshots for project '{project}'")
    return steps


def missing_after_restore(
    steps: Sequence[RestoreStep], present: Callable[[str], bool]
) -> list[str]:
    """The snapshot paths a restore was asked for that are not in the target now
    (``present`` answers for a snapshot path, e.g. by looking below the target)."""
    return [path for step in steps for path in step.expected if not present(path)]
