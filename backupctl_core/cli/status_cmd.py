"""``backupctl status`` and ``backupctl logs``: reading the audit store."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import MAX_LAST, echo_json, local_time, table
from backupctl_core.domain.events import human_duration, human_size, prune_text
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.stages import describe_stage


def _stage(record: RunRecord) -> str:
    if record.status is RunStatus.STARTED:
        return describe_stage(record.current_stage)
    if record.status is RunStatus.FAILED:
        return f"failed at {describe_stage(record.error_stage)}"
    if record.warning_message:  # "done, 1 asset path missing": the paths are in `logs`
        return f"done, {record.warning_message.split(':')[0]}"
    return "done"


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option(
    "--last",
    default=10,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_LAST),
    help="How many runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(context: CliContext, project: str | None, last: int, as_json: bool) -> None:
    """Last run of every project, or PROJECT's history with its live stage."""
    config = context.config
    tz = config.settings.timezone
    if project is None:
        latest = context.store().latest_per_project(config.names)
        if as_json:
            echo_json(
                {name: r.to_json() if (r := latest.get(name)) else None for name in config.names}
            )
            return
        rows = []
        for name in config.names:
            record = latest.get(name)
            if record is None:
                rows.append([name, "never run", "-", "-", "-", "-"])
                continue
            rows.append(
                [
                    name,
                    record.status.value,
                    _stage(record),
                    local_time(record.started_at, tz),
                    human_duration(record.duration_ms),
                    record.snapshot_id or "-",
                ]
            )
        click.echo(table(["PROJECT", "STATUS", "STAGE", "STARTED", "DURATION", "SNAPSHOT"], rows))
        return
    config.project(project)
    records = context.store().history(project, last)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    running = [r for r in records if r.status is RunStatus.STARTED]
    for record in running:
        click.echo(
            f"{project}: running since {local_time(record.started_at, tz)} — {_stage(record)}"
        )
    rows = [
        [
            local_time(r.started_at, tz),
            r.status.value,
            _stage(r),
            human_duration(r.duration_ms),
            human_size(r.dump_size_bytes),
            r.snapshot_id or "-",
        ]
        for r in records
    ]
    if not rows:
        click.echo(f"{project}: no runs recorded")
        return
    click.echo(table(["STARTED", "STATUS", "STAGE", "DURATION", "DUMP", "SNAPSHOT"], rows))


@click.command()
@click.argument("project", shell_complete=complete_projects)
@click.option(
    "--last",
    default=10,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_LAST),
    help="How many runs.",
)
@click.option("--failed", is_flag=True, help="Only failed runs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def logs(context: CliContext, project: str, last: int, failed: bool, as_json: bool) -> None:
    """PROJECT's audit log entries, newest first."""
    context.config.project(project)
    tz = context.config.settings.timezone
    records = context.store().history(project, last, failed_only=failed)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    if not records:
        click.echo(f"{project}: no {'failed ' if failed else ''}runs recorded")
        return
    for r in records:
        click.echo(f"{local_time(r.started_at, tz)}  {r.status.value}  run {r.id}")
        if r.status is RunStatus.FAILED:
            click.echo(f"  error at {describe_stage(r.error_stage)}: {r.error_message}")
        else:
            click.echo(
                f"  snapshot {r.snapshot_id or '-'} ({r.snapshot_mode}), dump"
                f" {human_size(r.dump_size_bytes)}, verified {'yes' if r.verified else 'no'},"
                f" encrypted {'yes' if r.encrypted else 'no'}"
            )
            click.echo(
                f"  files new {r.files_new or 0}, changed {r.files_changed or 0}, added"
                f" {human_size(r.bytes_added)}, cleaned {r.local_files_cleaned or 0}"
            )
            click.echo(f"  pruned {prune_text(r, r.started_at.astimezone(ZoneInfo(tz)))}")
            if r.warning_message:
                click.echo(f"  warning: {r.warning_message}")
        click.echo(
            f"  duration {human_duration(r.duration_ms)}, retries {r.retry_count},"
            f" stage {r.current_stage or '-'}"
        )
