"""``backupctl``: the entry point, global options and error handling."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.domain.errors import EXIT_FAILURE, BackupctlError

log = logging.getLogger("backupctl")


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
        except Exception as error:  # never a traceback for the operator
            log.debug("unexpected error", exc_info=True)
            click.echo(f"error: unexpected {type(error).__name__}: {error}", err=True)
            ctx.exit(EXIT_FAILURE)


_console = logging.StreamHandler()


def _setup_logging(verbose: int) -> None:
    """Warnings on stderr by default, info with -v, debug with -vv; the log file
    (commands that change things) has its own level, LOG_LEVEL."""
    _console.setStream(sys.stderr)  # click's test runner swaps sys.stderr per call
    _console.setLevel(max(logging.WARNING - 10 * verbose, logging.DEBUG))
    _console.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    logger = logging.getLogger("backupctl")
    if _console not in logger.handlers:
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


def _register() -> None:
    from backupctl_core.cli import (
        cache_cmd,
        config_cmd,
        db_cmd,
        health_cmd,
        plugins_cmd,
        prune_cmd,
        recover_cmd,
        restic_cmd,
        restore_cmd,
        run_cmd,
        serve_cmd,
        snapshots_cmd,
        status_cmd,
        summary_cmd,
    )

    cli.add_command(run_cmd.run)
    cli.add_command(status_cmd.status)
    cli.add_command(status_cmd.logs)
    cli.add_command(snapshots_cmd.snapshots)
    cli.add_command(restore_cmd.restore)
    cli.add_command(summary_cmd.summary)
    cli.add_command(recover_cmd.recover)
    cli.add_command(health_cmd.health)
    cli.add_command(serve_cmd.serve)
    cli.add_command(prune_cmd.prune)
    cli.add_command(cache_cmd.cache)
    cli.add_command(restic_cmd.restic)
    cli.add_command(plugins_cmd.plugins)
    cli.add_command(config_cmd.config)
    cli.add_command(db_cmd.db)


_register()


def main() -> None:
    cli(prog_name="backupctl")
