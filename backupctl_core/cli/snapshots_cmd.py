"""``backupctl snapshots <project>``: the project's snapshots, newest first."""

from __future__ import annotations

from pathlib import PurePosixPath

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import MAX_LAST, echo_json, local_time, table
from backupctl_core.domain.events import human_size
from backupctl_core.domain.pipeline import decode_tag


@click.command()
@click.argument("project", shell_complete=complete_projects)
@click.option(
    "--last", type=click.IntRange(min=1, max=MAX_LAST), default=None, help="Only the newest N."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def snapshots(context: CliContext, project: str, last: int | None, as_json: bool) -> None:
    """List PROJECT's snapshots, newest first."""
    settings = context.checked_project(project)
    found = context.registry.for_project(settings, context.config.settings).snapshots()
    found = found[:last] if last else found
    if as_json:
        echo_json(
            [
                {
                    "id": s.id,
                    "time": s.time.isoformat(),
                    "tags": list(s.tags),
                    "paths": list(s.paths),
                    "size_bytes": s.size_bytes,
                }
                for s in found
            ]
        )
        return
    if not found:
        click.echo(f"{project}: no snapshots")
        return
    tz = context.config.settings.timezone
    added = _bytes_added_by_snapshot(context, project)
    rows = []
    for snap in found:
        size = human_size(snap.size_bytes) if snap.size_bytes is not None else None
        if size is None and snap.id in added:  # restic < 0.17 records no size: the audit's
            size = f"+{human_size(added[snap.id])}"
        rows.append([snap.id, local_time(snap.time, tz), _kind(snap.tags), size or "-",
                     _short_paths(snap.paths)])  # fmt: skip
    click.echo(table(["ID", "TIME", "KIND", "SIZE", "PATHS"], rows, width=WIDTH))


WIDTH = 100  # the text layout fits this many columns; --json has everything


def _kind(tags: tuple[str, ...]) -> str:
    """combined | db | assets:<path> | original (the TypeScript tool's) | other."""
    for tag in tags:
        if tag.startswith("backupctl:"):
            return decode_tag(tag.removeprefix("backupctl:"))
    return "original" if any(t.startswith("timestamp:") for t in tags) else "other"


def _short_paths(paths: tuple[str, ...]) -> str:
    """Dump files by their name (the folder is the project's), folders in full."""
    return ", ".join(PurePosixPath(p).name if "_backup_" in p else p for p in paths)


def _bytes_added_by_snapshot(context: CliContext, project: str) -> dict[str, int]:
    """Snapshot id → bytes its run added, from the audit store; {} if unavailable."""
    from backupctl_core.domain.errors import BackupctlError

    try:
        records = context.store().history(project, MAX_LAST)
    except BackupctlError:
        return {}
    return {r.snapshot_id: r.bytes_added for r in records if r.snapshot_id and r.bytes_added}
