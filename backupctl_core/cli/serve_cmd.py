"""``backupctl serve`` (the service) and ``backupctl config reload``."""

from __future__ import annotations

import os
import signal

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import BackupctlError


@click.command()
@click.option("--no-http", is_flag=True, help="Do not start the HTTP endpoints.")
@click.pass_obj
def serve(context: CliContext, no_http: bool) -> None:
    """Run the service: migrations, crash recovery, scheduler, HTTP endpoints."""
    from backupctl_core.runtime.service import BackupService

    context.enable_file_log()
    service = BackupService(context.config_path, context.env_path, context.registry)
    click.echo(f"backupctl service starting (PID {os.getpid()})")
    service.serve_forever(with_http=not no_http)


def reload_service(context: CliContext) -> int:
    """Send SIGHUP to the running service; return its PID."""
    from backupctl_core.runtime.service import pid_file

    path = pid_file(context.config)
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        raise BackupctlError(f"no running service found (no PID file at {path})") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BackupctlError(f"the service (PID {pid} in {path}) is not running") from None
    return pid
