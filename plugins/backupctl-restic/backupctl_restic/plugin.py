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

import os
import posixpath
import re
import secrets
import shutil
import stat
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl_core import (
    CacheInfo,
    CheckResult,
    PluginError,
    PluginType,
    PruneResult,
    Reclaim,
    Snapshot,
    SyncResult,
    hookimpl,
)
from backupctl_core.plugin_kit import folder_creation_problem, tools_check
from backupctl_core.plugin_kit import ssh as ssh_kit
from backupctl_restic import listing, remembered
from backupctl_restic.output import (
    BackupProgress,
    bytes_pruned,
    count_removed,
    describe_json_error,
    kept_tags,
    parse_snapshots,
)
from backupctl_restic.repository import (
    cache_dir,
    is_sftp,
    restic_environment,
    restic_password,
    run_sftp_batch,
    ssh_command,
)
from backupctl_restic.runner import EXIT_INCOMPLETE, Restic, classify
from backupctl_restic.runner import _json_document as json_document
from backupctl_restic.series import retention_series

CHECK_NAME = "restic repository"
SECONDS_PER_MINUTE = 60  # dump_timeout_minutes' unit (a test shortens it)


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
def backupctl_run_session(project: Any, settings: Any) -> AbstractContextManager[None] | None:
    """Over SFTP: one SSH connection for the run's restic calls (plugin_kit.ssh)."""
    if not is_sftp(project, settings) or not settings.ssh.shared_connection:
        return None
    argv = ssh_command(settings)  # ..., user@host, -s, sftp
    return ssh_kit.shared_connection(project.name, argv[:-3], argv[-3])


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

    # The original tool's database.dump_timeout_minutes limits the upload too.
    limit = project.database.dump_timeout_minutes if project.database else None
    limit_seconds = limit * SECONDS_PER_MINUTE if limit else None
    key = (restic.repository, project.name)
    known = None
    if retention_args(project.retention):  # else no forget will need the series
        known = remembered.recall(settings, *key, datetime.now(UTC))
        listing.start(key, lambda: _list(Restic(project, settings), project), known)
    try:
        result = _backup(restic, backup, limit, limit_seconds)
    except BaseException:
        listing.discard(key)
        raise
    listing.written(key, all_tags)
    remembered.add_written(settings, *key, known, all_tags)
    return result


def _backup(
    restic: Restic, backup: list[str], limit: int | None, limit_seconds: float | None
) -> SyncResult:
    progress = BackupProgress()
    run = restic.run(backup, progress.feed, limit_seconds)
    if not run.ok and classify(run).kind == "no-repository":
        # First backup into this repository: create it, then back up again. (Asking
        # first with `cat config` would cost a connection and a key derivation on
        # every later run; restic stops before any work when there is no repository.)
        init_repository(restic)
        progress = BackupProgress()
        run = restic.run(backup, progress.feed, limit_seconds)
    if run.timed_out:
        raise PluginError(
            f"restic backup timed out after {limit} min (database.dump_timeout_minutes)",
            retryable=False,
        )
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
    """``--keep-last N``, ``--keep-daily N``, ``--keep-within 2d`` etc. (restic's
    meanings); a count of 0 or no duration leaves that flag out."""
    policy = {
        "--keep-last": retention.keep_last,
        "--keep-hourly": retention.keep_hourly,
        "--keep-daily": retention.keep_daily,
        "--keep-weekly": retention.keep_weekly,
        "--keep-monthly": retention.keep_monthly,
    }
    args = [arg for flag, keep in policy.items() if keep > 0 for arg in (flag, str(keep))]
    if retention.keep_within:
        args += ["--keep-within", retention.keep_within]
    return args


@hookimpl
def backupctl_prune(project: Any, settings: Any, reclaim: Reclaim) -> PruneResult:
    """``restic forget`` with the project's policy once per retention series
    (``series.py``), then a prune as ``reclaim`` says: never (``no``: the pipeline
    deferred it), if anything was forgotten, or always (``yes``). The prune rides on
    the last forget (``--prune``) when it can, else is one ``restic prune``; either
    way restic's summary says how many bytes it freed.

    Not restic's default grouping (host and paths: dump names change every run, so
    each snapshot was a group of one and nothing was ever removed), and not
    ``--group-by tags`` (the original tool's unique ``timestamp:`` tag made each of
    its snapshots a group of one, so they were never pruned).
    """
    restic = Restic(project, settings)
    removed, pruned, freed = forget(restic, project, settings, prune=reclaim != Reclaim.NO)
    owed = reclaim == Reclaim.YES or (reclaim == Reclaim.IF_FORGOTTEN and removed > 0)
    if owed and not pruned:
        freed = _prune(restic)
        pruned = True
    return PruneResult(snapshots_removed=removed, space_reclaimed=pruned, bytes_freed=freed)


def _prune(restic: Restic) -> int | None:
    """``restic prune``; the bytes its summary says it removed."""
    run = restic.run(["prune"])
    if not run.ok:
        raise restic.error(run)
    return bytes_pruned(run.stdout)


def forget(
    restic: Restic, project: Any, settings: Any, prune: bool = False
) -> tuple[int, bool, int | None]:
    """``restic forget`` per retention series: how many snapshots it removed, whether
    it pruned too, and the bytes that prune freed (None: no prune, or not reported).
    With ``prune``, the last series' forget gets ``--prune``
    (restic then prunes if that forget removed anything): one restic start, one key
    derivation and one login fewer than a separate ``restic prune``. The series come
    from the listing read during the backup, or remembered from the last forget
    (remembered.py); what this forget keeps is remembered for the next run."""
    key = (restic.repository, project.name)
    taken = listing.take(key)
    policy = retention_args(project.retention)
    if not policy:  # all zero: no policy, keep everything
        return 0, False, None
    if taken is None:
        taken = listing.Listing(_list(restic, project), datetime.now(UTC))
    named = retention_series(taken.snapshots, project.name, project.restic.snapshot_mode)
    series = list(named.values())
    removed = 0
    pruned = False
    freed: int | None = None
    kept: list[tuple[str, ...]] = []
    for number, filters in enumerate(series, start=1):
        tag_args = [arg for where in filters for arg in ("--tag", where)]
        # Not --quiet with --prune: the prune's summary (bytes freed) follows the JSON.
        with_prune = ["--prune"] if prune and number == len(series) else ["--quiet"]
        run = restic.run(["forget", "--json", *with_prune, "--group-by", "", *tag_args, *policy])
        if not run.ok:
            raise restic.error(run)
        here = 0
        if any(line.strip() for line in run.stdout):  # nothing at all when none matched
            document = json_document(run.stdout, "forget")
            here = count_removed(document)
            kept += kept_tags(document)
        removed += here
        pruned = "--prune" in with_prune and here > 0
        freed = bytes_pruned(run.stdout) if pruned else None
    remembered.remember(settings, *key, taken.listed_at, kept)
    return removed, pruned, freed


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
    return _list(Restic(project, settings), project)


def _list(restic: Restic, project: Any) -> list[Snapshot]:
    return parse_snapshots(restic.json(["snapshots", "--json", "--tag", project_tag(project)]))


@hookimpl
def backupctl_snapshot_stats(project: Any, settings: Any, snapshot_id: str) -> tuple[int, int]:
    """``restic stats --mode restore-size``: the regular files and bytes a full restore
    writes (restic counts files only, not folders or links)."""
    data = Restic(project, settings).json(
        ["stats", "--json", "--mode", "restore-size", snapshot_id]
    )
    try:
        return int(data["total_file_count"]), int(data["total_size"])
    except (KeyError, TypeError, ValueError):
        raise PluginError(
            f"restic stats gave no file count: {data!r}"[:200], retryable=False
        ) from None


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
        args += ["--include", escape_pattern(path)]
    before = _regular_files(Path(target))  # earlier snapshots of the same restore
    restic = Restic(project, settings)
    run = restic.run(args)
    if not run.ok:
        raise restic.error(run)
    return sorted(_regular_files(Path(target)) - before)


def escape_pattern(path: str) -> str:
    """``path`` as a restic include/exclude pattern matching exactly that path.

    restic reads patterns like Go's ``filepath.Match``: ``*``, ``?`` and ``[...]`` are
    wildcards and a backslash escapes. Unescaped, a folder ``glob[1]`` matched only
    ``glob1``, and the restore silently brought back nothing of it.
    """
    return re.sub(r"([\\*?\[\]])", r"\\\1", path)


def _regular_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


@hookimpl
def backupctl_check(project: Any, settings: Any) -> list[CheckResult]:
    """restic (and ssh for SFTP) installed; can we open the repository with this
    password (``cat config``, read-only)? If it does not exist yet: can the first
    backup create it?"""
    needed = ["restic", "ssh"] if is_sftp(project, settings) else ["restic"]
    tools = tools_check(needed, "install restic and openssh-client", TOOL_VERSION_ARGS)
    if tools.status == "fail":
        return [tools]
    try:
        restic = Restic(project, settings)
    except PluginError as error:
        return [tools, CheckResult(CHECK_NAME, "fail", error.message)]
    run = restic.run(["cat", "config", "--no-cache"])  # read-only: no cache either
    if run.ok:
        return [tools, CheckResult(CHECK_NAME, "pass", restic.repository)]
    if classify(run).kind == "no-repository":
        if is_sftp(project, settings):
            problem = remote_folder_problem(settings, project.restic.repository_path)
        else:
            problem = folder_creation_problem(Path(restic.repository.removeprefix("local:")))
        if problem:
            detail = f"{restic.repository} does not exist and cannot be created: {problem}"
            return [tools, CheckResult(CHECK_NAME, "fail", detail)]
        detail = f"{restic.repository} does not exist yet; the first backup creates it"
        return [tools, CheckResult(CHECK_NAME, "warn", detail)]
    return [tools, CheckResult(CHECK_NAME, "fail", restic.error(run).message)]


TOOL_VERSION_ARGS = {"restic": ["version"], "ssh": ["-V"]}


def remote_folder_problem(settings: Any, path: str, attempts: int = 4) -> str | None:
    """Why the storage user cannot create ``path`` on the SFTP server, or None.

    Creates and removes a probe folder beside it (``sftp mkdir``/``rmdir``), in the
    nearest folder up the tree that exists: restic creates the missing ones.
    """
    parent = posixpath.dirname(path.rstrip("/")) or "."
    for _ in range(attempts):
        probe = posixpath.join(parent, f".backupctl-probe-{secrets.token_hex(4)}")
        done, error = run_sftp_batch(settings, [f"mkdir {probe}", f"rmdir {probe}"])
        if done:
            return None
        if "no such file" not in error.lower() or parent in ("/", "."):
            return f"the storage user cannot create folders in {parent}: {error}"
        parent = posixpath.dirname(parent) or "/"
    return f"none of the folders above {path} exists"


# -- cache and passthrough ----------------------------------------------------------------

_REPOSITORY_ID = re.compile(r"^[0-9a-f]{64}$")


def repository_id(restic: Restic) -> str:
    """The repository's id (``restic cat config``), which names its cache folder.

    ``--no-cache`` so that asking does not create the cache it asks about.
    """
    run = restic.run(["cat", "config", "--no-cache"])
    if not run.ok:
        if classify(run).kind == "no-repository":
            raise PluginError(
                f"{restic.repository} does not exist yet, so it has no cache", retryable=False
            )
        raise restic.error(run)
    config = json_document(run.stdout, "cat")
    found = config.get("id") if isinstance(config, dict) else None
    if not isinstance(found, str) or not _REPOSITORY_ID.match(found):
        raise PluginError(
            f"restic cat config: no valid repository id in the output ({found!r})",
            retryable=False,
        )
    return found


def tree_size(path: Path) -> int:
    """Bytes in the files below ``path`` (symlinks not followed, not counted)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:  # removed meanwhile
                continue
            if not stat.S_ISLNK(info.st_mode):
                total += info.st_size
    return total


@hookimpl
def backupctl_cache(project: Any, settings: Any, clear: bool) -> CacheInfo:
    """The project's restic cache: ``{cache_dir}/{repository id}``, as restic lays it out.

    Only that folder is measured or removed: never the shared cache folder, never
    the cache of another repository. Projects sharing one repository share its cache.
    """
    restic = Restic(project, settings)
    root = cache_dir(settings)
    path = root / repository_id(restic)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise PluginError(f"{path} is not a restic cache folder; not touching it", retryable=False)
    if not path.exists():
        return CacheInfo(path=path, size_bytes=0, cleared=False)
    size = tree_size(path)
    if not clear:
        return CacheInfo(path=path, size_bytes=size, cleared=False)
    try:
        shutil.rmtree(path)
    except OSError as error:
        raise PluginError(f"cannot remove {path}: {error}", retryable=False) from error
    return CacheInfo(path=path, size_bytes=size, cleared=True)


@hookimpl
def backupctl_passthrough(project: Any, settings: Any) -> tuple[dict[str, str], list[str]]:
    """restic's environment (repository, password, cache) and argv (program, SFTP command)."""
    return restic_environment(project, settings)
