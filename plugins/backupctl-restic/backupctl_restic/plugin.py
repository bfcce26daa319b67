"""backupctl storage plugin: restic, on a local or SFTP repository.

Each hook below is one or two restic commands. The plumbing lives next door:
``repository.py`` (where the repository is, environment and argv),
``runner.py`` (running restic, turning failures into ``PluginError``) and
``output.py`` (reading restic's JSON). To write another storage plugin, copy this
package, keep the hook names and return the same value types.

Snapshots carry the tags the pipeline passes (``project:{name}`` is always added),
and everything else filters on ``project:{name}``, so several projects can share
one repository without seeing or pruning each other's snapshots.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backupctl_core import (
    CheckResult,
    PluginError,
    PluginType,
    PruneResult,
    Snapshot,
    SyncResult,
    hookimpl,
)
from backupctl_restic.output import (
    BackupProgress,
    count_removed,
    describe_json_error,
    parse_snapshots,
)
from backupctl_restic.repository import is_sftp, restic_password
from backupctl_restic.runner import EXIT_INCOMPLETE, Restic, classify

CHECK_NAME = "restic repository"


def project_tag(project: Any) -> str:
    return f"project:{project.name}"


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("storage", "restic")]


@hookimpl
def backupctl_validate_config(project: Any, settings: Any) -> list[str]:
    problems = []
    if not project.restic.repository_path.strip():
        problems.append("restic.repository_path: must not be empty")
    try:
        restic_password(project, settings)
    except PluginError:
        problems.append("restic.password: not set, and RESTIC_PASSWORD is not set in .env")
    key_path = settings.ssh.key_path
    if is_sftp(project, settings) and key_path is not None and not Path(key_path).is_file():
        problems.append(f"HETZNER_SSH_KEY_PATH: {key_path} does not exist")
    return problems


@hookimpl
def backupctl_sync(
    project: Any, settings: Any, paths: Sequence[Path], tags: Sequence[str]
) -> SyncResult:
    # restic only warns about a source path that does not exist: check ourselves.
    sources = [str(Path(path).absolute()) for path in paths]
    missing = [path for path in sources if not Path(path).exists()]
    if not sources or missing:
        what = f"paths do not exist: {', '.join(missing)}" if missing else "no paths given"
        raise PluginError(f"restic backup: {what}", retryable=False)

    restic = Restic(project, settings)
    all_tags = list(dict.fromkeys([project_tag(project), *tags]))
    if any("," in tag or not tag for tag in all_tags):  # restic reads "a,b" as two tags
        raise PluginError(f"restic backup: invalid tags {all_tags}", retryable=False)
    tag_args = [arg for tag in all_tags for arg in ("--tag", tag)]
    backup = ["backup", "--json", *tag_args, "--", *sources]

    progress = BackupProgress()
    run = restic.run(backup, progress.feed)
    if not run.ok and classify(run).kind == "no-repository":
        # First backup into this repository: create it, then back up again. (Asking
        # first with `cat config` would cost a connection and a key derivation on
        # every later run; restic stops before any work when there is no repository.)
        init_repository(restic)
        progress = BackupProgress()
        run = restic.run(backup, progress.feed)
    if run.returncode == EXIT_INCOMPLETE:
        # The snapshot exists, but it lacks files: that is not a good backup.
        first = describe_json_error(run.json_errors[0]) if run.json_errors else "see restic"
        raise PluginError(
            restic.mask(
                f"restic backup: snapshot {progress.snapshot_id} is incomplete,"
                f" {run.json_error_count or 'some'} file(s) could not be read: {first}"
            ),
            retryable=False,
        )
    if not run.ok:
        raise restic.error(run)
    return progress.result()


def init_repository(restic: Restic) -> None:
    """``restic init``; a repository created meanwhile by another process is fine."""
    init = restic.run(["init"])
    if not init.ok and not any("already exists" in line for line in init.stderr_tail):
        raise restic.error(init)


def retention_args(retention: Any) -> list[str]:
    """``--keep-daily N`` etc.; a value of 0 leaves that flag out."""
    policy = {
        "--keep-daily": retention.keep_daily,
        "--keep-weekly": retention.keep_weekly,
        "--keep-monthly": retention.keep_monthly,
    }
    return [arg for flag, keep in policy.items() if keep > 0 for arg in (flag, str(keep))]


@hookimpl
def backupctl_prune(project: Any, settings: Any) -> PruneResult:
    policy = retention_args(project.retention)
    if not policy:  # all zero: no policy, keep everything
        return PruneResult(snapshots_removed=0)
    # Group by tags only: every tag set of the project (combined, or db and assets in
    # separate mode) keeps its own policy. Not by paths: dump file names change on
    # every run, so each snapshot would be a group of one and nothing would ever be
    # removed. Not by host: a container's hostname changes when it is recreated.
    # So the tags the pipeline passes must be the same on every run.
    forget = ["forget", "--json", "--quiet", "--prune", "--group-by", "tags"]
    groups = Restic(project, settings).json([*forget, "--tag", project_tag(project), *policy])
    return PruneResult(snapshots_removed=count_removed(groups))


@hookimpl
def backupctl_unlock(project: Any, settings: Any) -> str:
    """``restic unlock``: removes stale locks only (restic keeps live ones)."""
    restic = Restic(project, settings)
    run = restic.run(["unlock"])
    if not run.ok and classify(run).kind == "no-repository":
        return f"{restic.repository} does not exist yet: nothing to unlock"
    if not run.ok:
        raise restic.error(run)
    return f"{restic.repository} unlocked"


@hookimpl
def backupctl_snapshots(project: Any, settings: Any) -> list[Snapshot]:
    data = Restic(project, settings).json(["snapshots", "--json", "--tag", project_tag(project)])
    return parse_snapshots(data)


@hookimpl
def backupctl_restore(
    project: Any,
    settings: Any,
    snapshot_id: str,
    target: Path,
    include: Sequence[str] | None,
) -> list[Path]:
    """``restic restore ID --target T [--include P ...]``; restic recreates the
    snapshot's absolute paths below ``target`` (symlinks are restored as links)."""
    args = ["restore", snapshot_id, "--target", str(target)]
    for path in include or ():
        args += ["--include", path]
    restic = Restic(project, settings)
    run = restic.run(args)
    if not run.ok:
        raise restic.error(run)
    return sorted(path for path in Path(target).rglob("*") if path.is_file())


@hookimpl
def backupctl_check(project: Any, settings: Any) -> list[CheckResult]:
    """Can we open the repository with this password? (``cat config``, read-only)."""
    try:
        restic = Restic(project, settings)
    except PluginError as error:
        return [CheckResult(CHECK_NAME, "fail", error.message)]
    run = restic.run(["cat", "config"])
    if run.ok:
        return [CheckResult(CHECK_NAME, "pass", restic.repository)]
    if classify(run).kind == "no-repository":
        detail = f"{restic.repository} does not exist yet; the first backup creates it"
        return [CheckResult(CHECK_NAME, "warn", detail)]
    return [CheckResult(CHECK_NAME, "fail", restic.error(run).message)]
