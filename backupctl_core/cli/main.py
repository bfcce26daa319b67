"""``backupctl``: the entry point, global options and error handling."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import EXIT_FAILURE, BackupctlError, Interrupted
from backupctl_core.runtime.log_format import ZonedFormatter, not_file_only
from backupctl_core.runtime.masking import SECRET_FILTER

log = logging.getLogger("backupctl")

# Command name -> "module:attribute" under backupctl_core.cli. A command's module is
# imported only when that command runs (or --help lists them all): each pulls in its
# own part of the runtime, and start-up time is paid on every call.
COMMANDS = {
    "cache": "cache_cmd:cache",
    "config": "config_cmd:config",
    "db": "db_cmd:db",
    "drill": "drill_cmd:drill",
    "health": "health_cmd:health",
    "init": "init_cmd:init",
    "logs": "status_cmd:logs",
    "plugins": "plugins_cmd:plugins",
    "prune": "prune_cmd:prune",
    "recover": "recover_cmd:recover",
    "restic": "restic_cmd:restic",
    "restore": "restore_cmd:restore",
    "run": "run_cmd:run",
    "serve": "serve_cmd:serve",
    "snapshots": "snapshots_cmd:snapshots",
    "status": "status_cmd:status",
    "summary": "summary_cmd:summary",
}


class BackupctlGroup(click.Group):
    """Turns every ``BackupctlError`` into one line on stderr and its exit code.

    Exit code 2 means "backup already in progress" (SPEC), so click's own
    usage errors, which would exit 2, exit 1 here.
    """

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            error.show()
            code = EXIT_FAILURE
        except click.ClickException as error:
            error.show()
            code = error.exit_code
        except click.Abort:
            click.echo("Aborted!", err=True)
            code = EXIT_FAILURE
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(
            importlib.import_module(f"backupctl_core.cli.{module}"), attribute
        )
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackupctlError as error:
            for line in error.message.splitlines() or [""]:
                click.echo(f"error: {line}", err=True)
            ctx.exit(error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except Interrupted as stop:  # outside the pipeline's own handling (e.g. at start)
            click.echo(f"error: {stop}", err=True)
            ctx.exit(stop.exit_code)
        except Exception as error:  # never a traceback for the operator
            log.debug("unexpected error", exc_info=True)
            click.echo(f"error: unexpected {type(error).__name__}: {error}", err=True)
            ctx.exit(EXIT_FAILURE)


_console = logging.StreamHandler()
CONSOLE_FORMAT = ZonedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", date=False)


def _setup_logging(verbose: int) -> None:
    """Warnings on stderr by default, info with -v, debug with -vv; the log file
    (commands that change things) has its own level, LOG_LEVEL."""
    _console.setStream(sys.stderr)  # click's test runner swaps sys.stderr per call
    _console.setLevel(max(logging.WARNING - 10 * verbose, logging.DEBUG))
    _console.setFormatter(CONSOLE_FORMAT)
    logger = logging.getLogger("backupctl")
    if _console not in logger.handlers:
        _console.addFilter(SECRET_FILTER)
        _console.addFilter(not_file_only)
        logger.addHandler(_console)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


@click.group(cls=BackupctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="BACKUPCTL_CONFIG",
    default=Path("config/projects.yml"),
    show_default=True,
    help="Projects file. [env BACKUPCTL_CONFIG]",
)
@click.option(
    "--env-file",
    "env_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Env file with globals and secrets. [env BACKUPCTL_ENV_FILE; default: .env]",
)
@click.option("-v", "--verbose", count=True, help="More output (-v info, -vv debug).")
@click.version_option(package_name="backupctl-core")
@click.pass_context
def cli(ctx: click.Context, config_path: Path, env_path: Path | None, verbose: int) -> None:
    """backupctl: database-agnostic backup orchestrator."""
    _setup_logging(verbose)
    explicit = env_path is not None or "BACKUPCTL_ENV_FILE" in os.environ
    if env_path is None:
        env_path = Path(os.environ.get("BACKUPCTL_ENV_FILE", ".env"))
    context = CliContext(config_path, env_path, explicit)
    ctx.obj = context
    ctx.call_on_close(context.close)


def main() -> None:
    cli(prog_name="backupctl")
