"""Readiness checks shared by ``run --dry-run``, ``health`` and ``GET /health``.

Every check only reads: no audit row, no lock, no dump, no repository change.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from backupctl_core.audit.store import AuditStore
from backupctl_core.config.loader import AppConfig
from backupctl_core.domain.artifacts import CheckResult
from backupctl_core.domain.drill import drill_overdue
from backupctl_core.domain.errors import (
    EXIT_CONFIG,
    EXIT_CONNECTIVITY,
    EXIT_FAILURE,
    EXIT_OK,
    BackupctlError,
)
from backupctl_core.domain.settings import GlobalSettings, ProjectSettings
from backupctl_core.plugin_kit import child_env
from backupctl_core.plugins import PluginRegistry

# A failing check of these kinds means "cannot reach it": exit code 4.
CONNECTIVITY_CHECKS = frozenset(
    {"database", "repository", "restic repository", "ssh", "audit database"}
)
CONFIG_CHECKS = frozenset({"config", "plugins", "gpg key"})


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed, else the code of the worst failure (4 > 3 > 1)."""
    codes = [EXIT_OK]
    for result in results:
        if result.status != "fail":
            continue
        if result.name in CONNECTIVITY_CHECKS:
            codes.append(EXIT_CONNECTIVITY)
        elif result.name in CONFIG_CHECKS:
            codes.append(EXIT_CONFIG)
        else:
            codes.append(EXIT_FAILURE)
    return max(codes)


def disk_check(settings: GlobalSettings) -> CheckResult:
    path = settings.backup_base_dir
    while not path.exists() and path != path.parent:
        path = path.parent  # a base dir not created yet: measure where it will be
    free_gb = shutil.disk_usage(path).free / 1024**3
    minimum = settings.health_disk_min_free_gb
    detail = f"{free_gb:.1f} GB free at {path} (minimum {minimum:g} GB)"
    return CheckResult("disk space", "pass" if free_gb >= minimum else "fail", detail)


def ssh_check(settings: GlobalSettings, timeout: int = 20) -> CheckResult | None:
    """Log in to the storage box over SFTP and leave at once (host key checked)."""
    ssh = settings.ssh
    if not ssh.host:
        return None
    key = ssh.key_path
    known = key.parent / "known_hosts" if key and (key.parent / "known_hosts").exists() else None
    argv = ["sftp", "-b", "-", "-P", str(ssh.port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={timeout}"]  # fmt: skip
    if key:
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if known:
        argv += ["-o", f"UserKnownHostsFile={known}"]
    argv.append(f"{ssh.user}@{ssh.host}" if ssh.user else ssh.host)
    where = f"{ssh.user}@{ssh.host}:{ssh.port}"
    try:
        result = subprocess.run(
            argv, input="bye\n", capture_output=True, text=True, timeout=timeout + 10,
            env=child_env(),
        )  # fmt: skip
    except FileNotFoundError:
        return CheckResult("ssh", "fail", "sftp not installed (openssh-client)")
    except subprocess.TimeoutExpired:
        return CheckResult("ssh", "fail", f"{where}: timed out")
    if result.returncode == 0:
        return CheckResult("ssh", "pass", f"{where}: login ok, host key known")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return CheckResult("ssh", "fail", f"{where}: {lines[-1] if lines else 'login failed'}")


def project_checks(
    config: AppConfig, project: ProjectSettings, registry: PluginRegistry
) -> list[CheckResult]:
    """Dry-run checks for one project, in REFERENCE's order."""
    results = [CheckResult("config", "pass", f"{config.config_path}: project '{project.name}'")]
    try:
        enabled = registry.project_plugins(project)
        problems = registry.validate(project, config.settings)
    except BackupctlError as error:
        return [*results, CheckResult("plugins", "fail", error.message)]
    if problems:
        return [*results, CheckResult("config", "fail", "; ".join(problems))]
    results += [CheckResult("config", "warn", w) for w in registry.validation_warnings(
        project, config.settings)]  # fmt: skip
    for role in ("database", "notification", "monitor", "storage", "encryption"):
        if role in enabled:
            info = enabled[role]
            results.append(
                CheckResult(
                    "plugins", "pass", f"{role}: {info.name} ({info.distribution} {info.version})"
                )
            )
    results += registry.for_project(project, config.settings).checks()
    ssh = ssh_check(config.settings)
    if ssh is not None:
        results.append(ssh)
    results.append(disk_check(config.settings))
    return results + asset_checks(project)


def asset_checks(project: ProjectSettings) -> list[CheckResult]:
    """A warning per missing asset folder: the run skips it and says so."""
    results = []
    for raw in project.assets.paths:
        exists = Path(raw).exists()
        results.append(
            CheckResult("asset path", "pass" if exists else "warn",
                        raw if exists else f"{raw} does not exist (it would be skipped)")
        )  # fmt: skip
    return results


def readiness_checks(config: AppConfig, registry: PluginRegistry) -> list[CheckResult]:
    """What ``health`` and ``GET /health`` check besides the audit store and disk: SSH
    (when set), then per enabled project what its dry run checks: the config its plugins
    accept, each plugin's own checks (tools and their versions, database login, GPG
    key, repository reachable or creatable) and its asset folders; project-named."""
    results = []
    ssh = ssh_check(config.settings)
    if ssh is not None:
        results.append(ssh)
    for project in config.enabled_projects:
        try:
            problems = registry.validate(project, config.settings)
            if problems:
                found = [CheckResult("config", "fail", "; ".join(problems))]
            else:
                found = registry.for_project(project, config.settings).checks()
        except BackupctlError as error:
            found = [CheckResult("plugins", "fail", error.message)]
        found += asset_checks(project)
        results += [CheckResult(r.name, r.status, f"{project.name}: {r.detail}") for r in found]
    return results


def drill_checks(config: AppConfig, store: AuditStore, now: datetime) -> list[CheckResult]:
    """One ``restore drill`` line per project with ``drill.max_age_days``: fail when
    its newest passed drill is older (or there is none)."""
    projects = [p for p in config.enabled_projects if p.drill and p.drill.max_age_days]
    if not projects:
        return []
    latest = store.latest_drills([p.name for p in projects])
    results = []
    for project in projects:
        assert project.drill is not None
        summary = latest.get(project.name)
        problem = drill_overdue(project.drill.max_age_days, summary, now)
        passed = summary.last_success if summary else None
        detail = problem or f"last passed {passed.isoformat(timespec='minutes') if passed else '-'}"
        detail = f"{project.name}: {detail}"
        results.append(CheckResult("restore drill", "fail" if problem else "pass", detail))
    return results


FLEET_WINDOW = timedelta(minutes=5)


def fleet_check(config: AppConfig, store: AuditStore, now: datetime) -> CheckResult | None:
    """Fleet mode (PostgreSQL audit store): the ``serve`` replicas seen in the last
    5 minutes, each with the projects whose newest run it made. Informational: a
    host may rightly run without a service (CLI runs, cron)."""
    if not config.settings.audit_db.host:
        return None
    replicas = store.replicas(now - FLEET_WINDOW)
    ran: dict[str, list[str]] = {}
    for name, record in store.latest_per_project(config.names).items():
        if record.hostname:
            ran.setdefault(record.hostname, []).append(name)
    parts = [
        f"{r.hostname} (pid {r.pid}, seen {int((now - r.last_seen).total_seconds())} s ago;"
        f" last ran: {', '.join(sorted(ran.get(r.hostname, []))) or '-'})"
        for r in replicas
    ]
    detail = f"{len(replicas)} replica(s) seen in the last 5 min" + (
        f": {'; '.join(parts)}" if parts else ""
    )
    return CheckResult("fleet", "pass" if replicas else "warn", detail)
