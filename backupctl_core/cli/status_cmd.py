"""``backupctl status`` and ``backupctl logs``: reading the audit store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import MAX_LAST, echo_json, local_time, table
from backupctl_core.domain.drill import DrillSummary, drill_overdue
from backupctl_core.domain.events import human_duration, human_size, prune_text
from backupctl_core.domain.records import RunRecord, RunStatus
from backupctl_core.domain.stages import describe_stage

if TYPE_CHECKING:
    from backupctl_core.config.loader import AppConfig


def _stage(record: RunRecord) -> str:
    if record.status is RunStatus.STARTED:
        return describe_stage(record.current_stage)
    if record.status is RunStatus.FAILED:
        return f"failed at {describe_stage(record.error_stage)}"
    if record.warning_message:  # "done, 1 asset path missing": the paths are in `logs`
        return f"done, {record.warning_message.split(':')[0]}"
    return "done"


def _host(record: RunRecord) -> str:
    return f"{record.hostname} ({record.pid})" if record.hostname else "-"


def _drill_json(summary: DrillSummary | None) -> dict[str, Any] | None:
    if summary is None:
        return None
    return {
        "started_at": summary.started_at.isoformat(),
        "ok": summary.ok,
        "snapshot_id": summary.snapshot_id,
        "error": summary.error_message,
        "last_success": summary.last_success.isoformat() if summary.last_success else None,
        "duration_ms": summary.duration_ms,
    }


def _echo_drills(config: AppConfig, drills: dict[str, DrillSummary]) -> None:
    """``last verified restore: <when>, <result>`` per project that drills or must."""
    zone = ZoneInfo(config.settings.timezone)
    now = datetime.now(UTC)
    for project in config.projects:
        summary = drills.get(project.name)
        max_age = project.drill.max_age_days if project.drill else None
        if summary is None and max_age is None:
            continue
        text = summary.text(zone) if summary else "never"
        overdue = drill_overdue(max_age, summary, now)
        flag = f" — OVERDUE: {overdue}" if overdue else ""
        click.echo(f"{project.name}: last verified restore: {text}{flag}")


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option(
    "--last",
    default=10,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_LAST),
    help="How many runs.",
)
@click.option(
    "--host",
    metavar="HOST",
    help="Only runs made on HOST (fleet mode: BACKUPCTL_HOSTNAME of the replica).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(
    context: CliContext, project: str | None, last: int, host: str | None, as_json: bool
) -> None:
    """Last run of every project, or PROJECT's history with its live stage."""
    config = context.config
    tz = config.settings.timezone
    fleet = bool(config.settings.audit_db.host) or host is not None
    if project is None:
        store = context.store()
        latest = store.latest_per_project(config.names, host=host)
        drills = store.latest_drills(config.names)
        if as_json:
            data: dict[str, Any] = {}
            for name in config.names:
                record = latest.get(name)
                data[name] = record.to_json() if record else None
                if data[name] is not None:
                    data[name]["last_drill"] = _drill_json(drills.get(name))
            echo_json(data)
            return
        rows = []
        for name in config.names:
            record = latest.get(name)
            if record is None:
                rows.append([name, "never run", "-", "-", "-", "-"] + ["-"] * fleet)
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
                + [_host(record)] * fleet
            )
        headers = ["PROJECT", "STATUS", "STAGE", "STARTED", "DURATION", "SNAPSHOT"]
        click.echo(table(headers + ["HOST"] * fleet, rows))
        _echo_drills(config, drills)
        return
    config.project(project)
    records = context.store().history(project, last, host=host)
    if as_json:
        echo_json([r.to_json() for r in records])
        return
    running = [r for r in records if r.status is RunStatus.STARTED]
    for record in running:
        where = f" on {_host(record)}" if fleet else ""
        click.echo(
            f"{project}: running{where} since {local_time(record.started_at, tz)}"
            f" — {_stage(record)}"
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
        + [_host(r)] * fleet
        for r in records
    ]
    if not rows:
        click.echo(f"{project}: no runs recorded" + (f" on {host}" if host else ""))
        return
    headers = ["STARTED", "STATUS", "STAGE", "DURATION", "DUMP", "SNAPSHOT"]
    click.echo(table(headers + ["HOST"] * fleet, rows))


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
    store = context.store()
    records = store.history(project, last, failed_only=failed)
    drills = [d for d in store.drill_history(project, last) if not (failed and d.ok)]
    # Backups and restore drills, newest first; a drill is never counted as a backup.
    entries: list[RunRecord | DrillSummary] = [*records, *drills]
    entries.sort(key=lambda e: e.started_at, reverse=True)
    entries = entries[:last]
    if as_json:
        echo_json(
            [
                {"kind": "backup", **e.to_json()}
                if isinstance(e, RunRecord)
                else {"kind": "drill", **(_drill_json(e) or {})}
                for e in entries
            ]
        )
        return
    if not entries:
        click.echo(f"{project}: no {'failed ' if failed else ''}runs recorded")
        return
    for r in entries:
        if isinstance(r, DrillSummary):
            result = "passed" if r.ok else f"FAILED: {r.error_message}"
            click.echo(f"{local_time(r.started_at, tz)}  drill  snapshot {r.snapshot_id or '-'}")
            click.echo(f"  restore drill {result}, duration {human_duration(r.duration_ms)}")
            continue
        where = f"  on {_host(r)}" if r.hostname and context.config.settings.audit_db.host else ""
        click.echo(f"{local_time(r.started_at, tz)}  {r.status.value}  run {r.id}{where}")
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
