"""``backupctl health``: audit DB, disk space, SSH and what each project's next run needs."""

from __future__ import annotations

import click

from backupctl_core.cli.context import CliContext
from backupctl_core.cli.output import echo_json
from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.errors import BackupctlError, ConnectivityError


def print_checks(results: list[CheckResult]) -> None:
    for result in results:
        click.echo(f"{result.status.upper():4}  {result.name}: {result.detail}")


def checks_json(results: list[CheckResult]) -> list[dict[str, str]]:
    return [{"name": r.name, "status": r.status, "detail": r.detail} for r in results]


def audit_check(context: CliContext) -> CheckResult:
    try:
        store = context.store()
    except ConnectivityError as error:
        return CheckResult("audit database", "fail", error.message)
    except BackupctlError as error:  # reachable but not migrated: not a connectivity problem
        return CheckResult("audit schema", "fail", error.message)
    return CheckResult("audit database", "pass", f"{store.description}: reachable, migrated")


def health_results(context: CliContext) -> list[CheckResult]:
    from datetime import UTC, datetime

    from backupctl_core.runtime.checks import (
        disk_check,
        drill_checks,
        fleet_check,
        readiness_checks,
    )

    config = context.config
    audit = audit_check(context)
    drills = []
    if audit.status == "pass":  # restore drills and the fleet are judged from the store
        now = datetime.now(UTC)
        drills = drill_checks(config, context.store(), now)
        fleet = fleet_check(config, context.store(), now)
        drills += [fleet] if fleet else []
    return [
        audit,
        disk_check(config.settings),
        *readiness_checks(config, context.registry),
        *drills,
    ]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@click.pass_context
def health(ctx: click.Context, context: CliContext, as_json: bool) -> None:
    """Check the audit database, disk space, SSH, and for every enabled project what its
    next run needs: tools, database login, GPG key, repository, asset folders."""
    from backupctl_core.runtime.checks import exit_code

    results = health_results(context)
    code = exit_code(results)
    if as_json:
        echo_json({"healthy": code == 0, "exit_code": code, "checks": checks_json(results)})
    else:
        print_checks(results)
        click.echo("healthy" if code == 0 else "UNHEALTHY")
    ctx.exit(code)
