"""``backupctl plugins``: what is installed, from which distribution."""

from __future__ import annotations

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import echo_json, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(context: CliContext, as_json: bool) -> None:
    """List installed plugins: name, distribution, version, hooks."""
    infos = context.registry.infos
    if as_json:
        echo_json([info.as_json() for info in infos])
        return
    if not infos:
        click.echo("no plugins installed")
        return
    rows = [
        [
            info.name,
            info.distribution,
            info.version,
            ", ".join(f"{t.kind}:{t.name}" for t in info.types) or "-",
            f"BROKEN: {info.error}"
            if info.error
            else ", ".join(h.removeprefix("backupctl_") for h in info.hooks),
        ]
        for info in infos
    ]
    click.echo(table(["NAME", "DISTRIBUTION", "VERSION", "PROVIDES", "HOOKS"], rows))
