"""``backupctl summary``: the daily summary of the last 24 hours, now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.events import daily_summary_event


@click.command()
@click.option("--print", "print_only", is_flag=True, help="Print it; send nothing.")
@click.pass_obj
def summary(context: CliContext, print_only: bool) -> None:
    """Send the daily summary (every run of the last 24 h) to the global channel."""
    from backupctl_core.runtime.notifier import Notifier

    settings = context.config.settings
    now = datetime.now(UTC)
    store = context.store()
    runs = store.finished_since(now - timedelta(hours=24))
    drills = store.latest_drills(context.config.names)
    event = daily_summary_event(runs, now.astimezone(ZoneInfo(settings.timezone)), drills)
    click.echo(event.text)
    if print_only:
        return
    notifier = Notifier(context.config, context.registry)
    channel = notifier.channel(None)
    if channel.type == "none":
        click.echo("NOTIFICATION_TYPE is none: nothing sent")
    elif notifier.send(None, event):
        click.echo(f"sent via {channel.type}")
    else:
        click.echo(f"not delivered; kept in {notifier.fallback.path} for replay")
