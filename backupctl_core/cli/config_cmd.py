"""``backupctl config validate | show``."""

from __future__ import annotations

import io

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import ConfigError


@click.group()
def config() -> None:
    """Check and inspect config/projects.yml and .env."""


@config.command()
@click.pass_obj
def validate(context: CliContext) -> None:
    """Load both files and check every project against its plugins."""
    loaded = context.config
    problems: list[str] = []
    for project in loaded.projects:
        try:
            problems += [
                f"projects[{project.name}].{p}"
                for p in context.registry.validate(project, loaded.settings)
            ]
        except ConfigError as error:
            problems.append(error.message)
    if problems:
        raise ConfigError("\n".join(f"{loaded.config_path}: {p}" for p in problems))
    names = ", ".join(loaded.names) or "none"
    click.echo(f"config OK: {len(loaded.projects)} project(s): {names}")


@config.command()
@click.argument("project")
@click.pass_obj
def show(context: CliContext, project: str) -> None:
    """PROJECT's resolved settings, secrets masked."""
    from ruamel.yaml import YAML

    from backupctl_core.config.render import project_view

    settings = context.config.project(project)
    yaml = YAML()
    yaml.default_flow_style = False
    buffer = io.StringIO()
    yaml.dump(project_view(settings), buffer)
    click.echo(buffer.getvalue().rstrip())
