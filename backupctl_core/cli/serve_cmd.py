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


def _is_backupctl_serve(pid: int) -> bool:
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
    except OSError:
        return False
    words = [os.path.basename(arg.decode(errors="replace")) for arg in argv]
    return "serve" in words and any("backupctl" in word for word in words)


def reload_service(context: CliContext) -> int:
    """Send SIGHUP to the running service; return its PID.

    Only to the process holding the service lock of this backup folder, and only
    when it is a ``backupctl serve``: a stale or planted PID file is never obeyed.
    """
    from backupctl_core.runtime.lock import ServiceLock

    lock = ServiceLock(context.config.settings.backup_base_dir)
    pid = lock.holder()
    if pid is None:
        raise BackupctlError(
            f"no running service found for {lock.path.parent} (nobody holds {lock.path})"
        )
    if not _is_backupctl_serve(pid):
        raise BackupctlError(
            f"PID {pid} in {lock.path} is not a backupctl serve process; not signalling it"
        )
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BackupctlError(f"the service (PID {pid}) is not running") from None
    return pid
