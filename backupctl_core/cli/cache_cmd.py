"""``backupctl cache <project> [--clear]`` and ``cache --clear-all``: the local cache
of the storage tool (restic's, under ``{BACKUP_BASE_DIR}/.cache/restic``)."""

from __future__ import annotations

import logging
from typing import Any

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import echo_json
from backupctl_core.domain.artifacts import CacheInfo
from backupctl_core.domain.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupctlError,
    UsageError,
)
from backupctl_core.domain.events import human_size

log = logging.getLogger("backupctl.cache")


def project_cache(context: CliContext, name: str, clear: bool) -> CacheInfo:
    """The project's cache; with ``clear`` it is removed, under the project's lock
    so that it never disappears under a running backup of that project."""
    project = context.checked_project(name)
    settings = context.config.settings
    plugins = context.registry.for_project(project, settings)
    if not clear:
        return plugins.cache(clear=False)
    from backupctl_core.runtime.lock import ProjectLock

    with ProjectLock(settings.project_dir(name), name):
        info = plugins.cache(clear=True)
    if info.cleared:
        log.info("%s: cleared cache %s (%d bytes)", name, info.path, info.size_bytes)
    return info


def _as_json(name: str, info: CacheInfo) -> dict[str, Any]:
    return {
        "project": name,
        "path": str(info.path),
        "size_bytes": info.size_bytes,
        "cleared": info.cleared,
    }


def _line(name: str, info: CacheInfo, clear: bool) -> str:
    if not clear:
        if not info.path.exists():
            return f"{name}: no cache yet ({info.path})"
        return f"{name}: {human_size(info.size_bytes)} in {info.path}"
    if info.cleared:
        return f"{name}: cleared {human_size(info.size_bytes)} ({info.path})"
    return f"{name}: nothing to clear ({info.path})"


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option("--clear", is_flag=True, help="Remove PROJECT's cache.")
@click.option("--clear-all", is_flag=True, help="Remove the cache of every enabled project.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@click.pass_context
def cache(
    ctx: click.Context,
    context: CliContext,
    project: str | None,
    clear: bool,
    clear_all: bool,
    as_json: bool,
) -> None:
    """Show the size and path of PROJECT's local restic cache, or clear it.

    The cache only speeds restic up; it is rebuilt from the repository when needed.
    """
    if clear_all:
        if project is not None or clear:
            raise UsageError("--clear-all takes no project and no --clear")
        _clear_all(ctx, context, as_json)
        return
    if project is None:
        raise UsageError("give a project name, or --clear-all")
    if clear:
        context.enable_file_log()
    info = project_cache(context, project, clear)
    if as_json:
        echo_json(_as_json(project, info))
    else:
        click.echo(_line(project, info, clear))


def _clear_all(ctx: click.Context, context: CliContext, as_json: bool) -> None:
    """Every enabled project in file order; one failure does not stop the rest."""
    context.enable_file_log()
    projects = context.config.enabled_projects
    results: list[dict[str, Any]] = []
    succeeded = 0
    for settings in projects:
        name = settings.name
        try:
            info = project_cache(context, name, clear=True)
        except BackupctlError as error:
            message = " ".join(error.message.split())
            results.append({"project": name, "error": message})
            if not as_json:
                click.echo(f"{name}: FAILED: {message}")
            continue
        succeeded += 1
        results.append(_as_json(name, info))
        if not as_json:
            click.echo(_line(name, info, clear=True))
    if as_json:
        echo_json(results)
    elif not projects:
        click.echo("no enabled projects")
    if succeeded == len(projects):
        ctx.exit(EXIT_OK)
    ctx.exit(EXIT_PARTIAL if succeeded else EXIT_FAILURE)
