"""``backupctl drill <project> | --all``: prove that a snapshot imports."""

from __future__ import annotations

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import echo_json
from backupctl_core.domain.drill import DrillReport
from backupctl_core.domain.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
)
from backupctl_core.domain.events import human_duration, human_size


def drill_one(context: CliContext, name: str, snapshot: str, quiet: bool) -> DrillReport:
    from backupctl_core.runtime.drill import run_drill

    project = context.checked_project(name)

    def step(text: str) -> None:
        if not quiet:
            click.echo(f"{name}: {text}")

    return run_drill(context.config, project, context.registry, context.store(), snapshot, step)


def _print(report: DrillReport) -> None:
    for check in report.checks:
        mark = "ok  " if check.status == "pass" else "FAIL"
        click.echo(f"  {mark} {check.name}: {check.detail}")
    verdict = "passed" if report.ok else "FAILED"
    click.echo(
        f"{report.project}: drill {verdict} — snapshot {report.snapshot_id or '-'},"
        f" restored {human_size(report.restored_bytes)}, {human_duration(report.duration_ms)}"
    )


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option("--all", "drill_all", is_flag=True, help="Every enabled project, in file order.")
@click.option("--snapshot", default="latest", show_default=True, help="A snapshot id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_obj
@click.pass_context
def drill(
    ctx: click.Context,
    context: CliContext,
    project: str | None,
    drill_all: bool,
    snapshot: str,
    as_json: bool,
) -> None:
    """Restore a snapshot of PROJECT into a scratch database and prove it imports."""
    if drill_all == (project is not None):
        raise UsageError("give a project name or --all, not both and not neither")
    if drill_all and snapshot != "latest":
        raise UsageError("--snapshot names one project's snapshot: not with --all")
    context.enable_file_log()
    names = [project] if project else [p.name for p in context.config.enabled_projects]
    reports = []
    for name in names:
        report = drill_one(context, name, snapshot, quiet=as_json)
        reports.append(report)
        if not as_json:
            _print(report)
    if as_json:
        data = [r.as_json() for r in reports]
        echo_json(data if drill_all else data[0])
    passed = sum(1 for r in reports if r.ok)
    if passed == len(reports):
        ctx.exit(EXIT_OK)
    ctx.exit(EXIT_PARTIAL if drill_all and passed else EXIT_FAILURE)
