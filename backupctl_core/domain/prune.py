"""When a backup run reclaims space: ``forget`` on every run, ``prune`` at most once
per ``retention.prune_interval``, and only when forgotten snapshots hold space.

``restic forget`` only removes snapshot files: cheap. ``restic prune`` reads the
repository's index and rewrites the packs that forgotten snapshots used: it is the
expensive half, and deferring it lets the space of a few forgotten snapshots wait
(at most one interval) in exchange for one prune per interval instead of per run.

The last prune comes from the audit log (the newest run of the project that
pruned): it survives restarts, and is never guessed. A run that cannot read it
prunes as before, whenever its forget removed something.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from attrs import frozen

from backupctl_core.domain.artifacts import Reclaim


@frozen
class PruneHistory:
    """What the audit log knows about a project's prunes."""

    last_pruned_at: datetime | None  # the newest run that pruned; None: none did
    # A run after that forgot snapshots without pruning: their space still waits.
    unreclaimed: bool = False


@frozen
class PrunePlan:
    reclaim: Reclaim
    due_at: datetime | None = None  # when a prune is due, if it is not due now


def plan_prune(interval: timedelta, history: PruneHistory | None, now: datetime) -> PrunePlan:
    """What this run's ``backupctl_prune`` may do.

    Due (interval 0, never pruned, unknown history, or the interval has passed):
    prune if this run's forget removes snapshots, or anyway if earlier ones did and
    their space still waits. Not due: forget only, and say until when.
    """
    if history is None:
        return PrunePlan(Reclaim.IF_FORGOTTEN)
    if interval and history.last_pruned_at is not None:
        due_at = history.last_pruned_at + interval
        if due_at > now:
            return PrunePlan(Reclaim.NO, due_at)
    return PrunePlan(Reclaim.YES if history.unreclaimed else Reclaim.IF_FORGOTTEN)
