"""``backupctl recover``: crash recovery on demand (the service runs it at start)."""

from __future__ import annotations

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import EXIT_FAILURE


@click.command()
@click.pass_obj
@click.pass_context
def recover(ctx: click.Context, context: CliContext) -> None:
    """Mark interrupted runs failed, remove orphaned dumps and stale locks,
    unlock repositories, replay the fallback file."""
    from backupctl_core.runtime.recovery import Recovery

    reports = Recovery(context.config, context.registry, context.store()).run()
    for report in reports:
        click.echo(f"{'ok  ' if report.ok else 'FAIL'} {report.step}: {report.detail}")
        for warning in report.warnings:
            click.echo(f"warn   {warning}")
    if not all(report.ok for report in reports):
        ctx.exit(EXIT_FAILURE)
