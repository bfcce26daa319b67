"""``backupctl snapshots <project>``: the project's snapshots, newest first."""

from __future__ import annotations

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
    """List PROJECT's snapshots with their tags, newest first."""
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
    rows = [
        [
            s.id,
            local_time(s.time, tz),
            ",".join(decode_tag(tag) for tag in s.tags),
            ", ".join(s.paths),
            human_size(s.size_bytes),
        ]
        for s in found
    ]
    click.echo(table(["ID", "TIME", "TAGS", "PATHS", "SIZE"], rows))
