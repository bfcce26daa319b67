"""``backupctl prune <project> | --all``: apply the retention policy and reclaim the
space of forgotten snapshots now, whatever ``retention.prune_interval`` says."""

from __future__ import annotations

import logging

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.domain.artifacts import Reclaim
from backupctl_core.domain.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupctlError,
    UsageError,
)
from backupctl_core.domain.events import human_size

log = logging.getLogger("backupctl.prune")


def prune_project(context: CliContext, name: str) -> str:
    """Prune one project under its lock; what it did (``2 snapshot(s) removed, …``).

    The lock is the one a backup holds, so a prune never runs alongside a backup
    of the same project (``LockHeldError``, exit 2, when one is running).
    """
    from backupctl_core.runtime.lock import ProjectLock

    project = context.checked_project(name)
    settings = context.config.settings
    plugins = context.registry.for_project(project, settings)
    with ProjectLock(settings.project_dir(name), name):
        result = plugins.prune(Reclaim.YES)
    done = f"{result.snapshots_removed} snapshot(s) removed"
    if result.bytes_freed is not None:
        done += f", {human_size(result.bytes_freed)} freed"
    elif result.space_reclaimed is not None:
        done += ", space reclaimed" if result.space_reclaimed else ", space not reclaimed"
    log.info("%s: prune: %s", name, done)
    return done


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option("--all", "prune_all", is_flag=True, help="Every enabled project, in file order.")
@click.pass_obj
@click.pass_context
def prune(ctx: click.Context, context: CliContext, project: str | None, prune_all: bool) -> None:
    """Remove PROJECT's snapshots that its retention policy no longer keeps
    (or those of --all enabled projects), and the data only they used, now:
    retention.prune_interval only spaces out the prunes of backup runs."""
    if prune_all == (project is not None):
        raise UsageError("give a project name or --all, not both and not neither")
    context.enable_file_log()
    if project is not None:
        # Errors propagate: one line on stderr and their exit code (2 lock, 4 connectivity).
        click.echo(f"{project}: {prune_project(context, project)}")
        return

    projects = context.config.enabled_projects
    if not projects:
        click.echo("no enabled projects")
        return
    succeeded = 0
    for settings in projects:
        try:
            done = prune_project(context, settings.name)
        except BackupctlError as error:  # this project fails, the rest are still pruned
            log.info("%s: prune failed: %s", settings.name, error.message)
            click.echo(f"{settings.name}: FAILED: {' '.join(error.message.split())}")
            continue
        succeeded += 1
        click.echo(f"{settings.name}: {done}")
    click.echo(f"Summary: {succeeded}/{len(projects)} projects pruned")
    if succeeded == len(projects):
        ctx.exit(EXIT_OK)
    ctx.exit(EXIT_PARTIAL if succeeded else EXIT_FAILURE)
