"""``backupctl run <project> | --all``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import click

from backupctl_core.cli.completion import complete_projects
from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import echo_json
from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.errors import (
    EXIT_CONNECTIVITY,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupctlError,
    ConfigError,
    ConnectivityError,
    UsageError,
)
from backupctl_core.domain.events import human_duration, human_size
from backupctl_core.domain.settings import ProjectSettings
from backupctl_core.domain.stages import Stage, describe_stage

if TYPE_CHECKING:  # the runner pulls in peewee/psycopg: import it only to run
    from backupctl_core.audit.store import AuditStore
    from backupctl_core.runtime.runner import RunOutcome


def _summary(outcome: RunOutcome) -> str:
    record = outcome.record
    if outcome.ok:
        warning = f" — warning: {record.warning_message}" if record.warning_message else ""
        return (
            f"success — snapshot {record.snapshot_id}, dump {human_size(record.dump_size_bytes)},"
            f" added {human_size(record.bytes_added)}, {human_duration(record.duration_ms)}"
            f"{warning}"
        )
    # The error itself is on stderr, once: the pipeline logs it as the run fails.
    return (
        f"FAILED at {describe_stage(record.error_stage)} after {human_duration(record.duration_ms)}"
    )


def _run_one(
    context: CliContext, project: ProjectSettings, verbose: bool, quiet: bool
) -> RunOutcome:
    from backupctl_core.runtime.progress import ProgressOptions, interval_from_env
    from backupctl_core.runtime.runner import run_project

    def show_stage(stage: Stage) -> None:
        if verbose and not quiet:
            zone = ZoneInfo(context.config.settings.timezone)  # as every time shown
            stamp = datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")[11:]
            click.echo(f"{stamp} {project.name}: {stage.progress()}")

    from backupctl_core.runtime.interrupt import stop_on_signals

    console = None if quiet else sys.stderr  # progress is not a result: stderr
    progress = ProgressOptions(
        console=console,
        live=console is not None and console.isatty(),
        interval=interval_from_env(),
    )
    store = _audit_store(context)
    with stop_on_signals():
        return run_project(
            context.config, project, context.registry, store, on_stage=show_stage,
            progress=progress,
        )  # fmt: skip


def _audit_store(context: CliContext) -> AuditStore:
    """The store; when it is unreachable the backup still runs (rows go to the fallback)."""
    try:
        return context.store()
    except ConnectivityError as error:
        click.echo(f"warning: {error.message}; this run is kept in the fallback file", err=True)
        return context.store(migrated=False)


def _dry_run(
    ctx: click.Context, context: CliContext, names: list[str] | None, as_json: bool
) -> None:
    """Check everything a run needs; change nothing (no audit row, no lock, no dump)."""
    from backupctl_core.cli.health_cmd import audit_check, checks_json, print_checks
    from backupctl_core.runtime.checks import exit_code, project_checks

    reports = []
    worst = EXIT_OK
    run_all = names is None
    audit = audit_check(context)  # the run writes its row there: reachable and migrated
    if audit.name == "audit database" and audit.status == "fail":
        # Unreachable is not fatal to a run (its row goes to the fallback file), an
        # unmigrated store is ("audit schema": the run would stop at once).
        detail = f"{audit.detail}; the run would keep its row in the fallback file"
        audit = CheckResult(audit.name, "warn", detail)
    for name in names or [p.name for p in context.config.enabled_projects]:
        project = context.config.project(name)
        results = [audit, *project_checks(context.config, project, context.registry)]
        code = exit_code(results)
        worst = max(worst, code)
        reports.append({"project": name, "ready": code == EXIT_OK, "exit_code": code,
                        "checks": checks_json(results)})  # fmt: skip
        if not as_json:
            click.echo(f"{name}: dry run")
            print_checks(results)
            verdict = "ready" if code == EXIT_OK else f"NOT READY (exit {code})"
            click.echo(f"{name}: {verdict}")
    if as_json:
        echo_json(reports if run_all else reports[0])  # --all: always a list
    ctx.exit(worst)


@click.command()
@click.argument("project", required=False, shell_complete=complete_projects)
@click.option("--all", "run_all", is_flag=True, help="Every enabled project, in file order.")
@click.option(
    "--dry-run", is_flag=True, help="Check config, plugins, connectivity; change nothing."
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: machine-readable.")
@click.option(
    "-q", "--quiet", is_flag=True, help="Print only warnings and errors; the exit code tells."
)
@click.pass_obj
@click.pass_context
def run(
    ctx: click.Context,
    context: CliContext,
    project: str | None,
    run_all: bool,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Back up PROJECT now (or --all projects)."""
    verbose = bool(ctx.find_root().params.get("verbose"))
    if run_all == (project is not None):
        raise UsageError("give a project name or --all, not both and not neither")
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if dry_run:
        _dry_run(ctx, context, [project] if project else None, as_json)
        return
    context.enable_file_log()

    def say(line: str) -> None:
        if not quiet:
            click.echo(line)

    if project is not None:
        settings = context.checked_project(project)
        say(f"{project}: started")
        outcome = _run_one(context, settings, verbose, quiet)
        say(f"{project}: {_summary(outcome)}")
        if outcome.interrupted is not None:
            ctx.exit(outcome.interrupted.exit_code)
        if not outcome.ok:
            ctx.exit(EXIT_CONNECTIVITY if outcome.connectivity_failure else EXIT_FAILURE)
        return

    projects = context.config.enabled_projects
    results: list[tuple[str, bool]] = []
    for settings in projects:
        say(f"{settings.name}: started")
        interrupted = None
        try:
            context.checked_project(settings.name)
            outcome = _run_one(context, settings, verbose, quiet)
            ok, line, interrupted = outcome.ok, _summary(outcome), outcome.interrupted
        except ConfigError:
            raise
        except BackupctlError as error:  # e.g. lock held: this project fails, the rest run
            click.echo(f"error: {settings.name}: {error.message}", err=True)
            ok, line = False, "FAILED, not run"
        say(f"{settings.name}: {line}")
        results.append((settings.name, ok))
        if interrupted is not None:  # the operator asked to stop: no further projects
            skipped = len(projects) - len(results)
            say(f"Summary: stopped by {interrupted.signal_name}, {skipped} project(s) not run")
            ctx.exit(interrupted.exit_code)
    succeeded = sum(1 for _, ok in results if ok)
    say(f"Summary: {succeeded}/{len(results)} projects succeeded")
    if succeeded == len(results):
        ctx.exit(EXIT_OK)
    ctx.exit(EXIT_PARTIAL if succeeded else EXIT_FAILURE)
