"""Which of a project's snapshots form one retention series.

Retention applies per series, so that a policy like ``keep_daily: 7`` keeps seven
days *of each thing backed up*:

* ours carry a stable ``backupctl:<kind>`` tag: ``combined``, or in separate mode
  ``db`` and ``assets:<path>`` (one series each);
* the original TypeScript backupctl tagged every snapshot ``project:<name>``,
  ``timestamp:<when>`` (unique per run) and ``db:<type>``, one snapshot per run with
  the dump and the assets: its snapshots continue our ``combined`` series in
  combined mode, and form a series of their own in separate mode;
* anything else (a snapshot made by hand into the same repository) is in no series
  and is never removed: nothing is deleted that backupctl cannot attribute.

A series is given to restic as tag filters (``--tag a,b`` ANDs, several ``--tag``
OR), with ``--group-by ''`` so restic's policy sees the whole series at once.
"""

from __future__ import annotations

from collections.abc import Iterable

from backupctl_core import Snapshot

OURS = "backupctl:"
ORIGINAL_RUN = "timestamp:"  # the original tool's per-run tag


def retention_series(
    snapshots: Iterable[Snapshot], project: str, snapshot_mode: str
) -> dict[str, list[str]]:
    """Series name → its tag filters, for the project's snapshots."""
    project_tag = f"project:{project}"
    series: dict[str, list[str]] = {}
    for snapshot in snapshots:
        if project_tag not in snapshot.tags:
            continue
        ours = next((tag for tag in snapshot.tags if tag.startswith(OURS)), None)
        run = next((tag for tag in snapshot.tags if tag.startswith(ORIGINAL_RUN)), None)
        if ours is not None:
            name, where = ours, f"{project_tag},{ours}"
        elif run is not None:
            name = f"{OURS}combined" if snapshot_mode == "combined" else "original"
            where = f"{project_tag},{run}"
        else:
            continue
        filters = series.setdefault(name, [])
        if where not in filters:
            filters.append(where)
    return series
