"""``backupctl restic <project> <args...>``: restic itself, on the project's repository.

Everything after the project name goes to restic untouched (``--help`` and ``--``
included). backupctl then *replaces itself* with restic (``exec``): stdin, stdout,
stderr, the terminal, signals (Ctrl-C reaches restic directly) and the exit code are
restic's own, so interactive and long-running commands behave as when restic is run
by hand. The repository, password and cache come from the environment
(``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD``, ``RESTIC_CACHE_DIR``), the SSH options
from ``-o sftp.command=...``; the password is never on the command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import PluginError

log = logging.getLogger("backupctl.restic")

# Signals Python ignores at start-up; an ignored signal stays ignored across exec,
# and restic must die of SIGPIPE in `backupctl restic p dump ... | head` as usual.
_RESET_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)


def exec_tool(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with ``argv``; returns only by raising ``PluginError``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()  # flush and close the log file before the process image goes
    for signum in _RESET_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        raise PluginError(f"cannot start {argv[0]}: {error}", retryable=False) from error


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("project", shell_complete=complete_projects)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def restic(context: CliContext, project: str, args: tuple[str, ...]) -> None:
    """Run restic ARGS on PROJECT's repository, with its credentials set.

    \b
    backupctl restic shop snapshots
    backupctl restic shop check --read-data-subset 5%
    backupctl restic shop dump latest /path/in/snapshot > file

    Output, errors and the exit code are restic's.
    """
    settings = context.checked_project(project)
    env, argv = context.registry.for_project(settings, context.config.settings).passthrough()
    command = [*argv, *args]
    context.enable_file_log()
    log.info("%s: restic passthrough: %s", project, " ".join(["restic", *args]))
    context.close()
    exec_tool(command, env)
