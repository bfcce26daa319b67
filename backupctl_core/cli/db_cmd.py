"""``backupctl db migrate | status``: the audit store's schema."""

from __future__ import annotations

import click

from backupctl_core.cli.context import CliContext


@click.group()
def db() -> None:
    """Audit database schema migrations."""


@db.command()
@click.pass_obj
def migrate(context: CliContext) -> None:
    """Apply pending migrations to the audit database."""
    store = context.store(migrated=False)
    applied = store.migrate()
    if applied:
        click.echo(f"{store.description}: applied {', '.join(applied)}")
    else:
        click.echo(f"{store.description}: up to date")


@db.command(name="status")
@click.pass_obj
def db_status(context: CliContext) -> None:
    """Show which migrations are applied."""
    store = context.store(migrated=False)
    click.echo(store.description)
    for name, applied in store.migration_status():
        click.echo(f"  {name}: {applied.isoformat(sep=' ') if applied else 'pending'}")
