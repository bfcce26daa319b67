"""BorgBackup storage for backupctl: ``storage: {type: borg, config: {...}}``.

A project's snapshots are borg archives named ``<project>-<UTC time>-<4 hex>`` (the
snapshot id backupctl shows and restores); the archive comment holds the run's tags
and paths as JSON, so ``snapshots`` lists them like restic's.

- ``config.repository_path``: a local folder, or with ``HETZNER_SSH_HOST`` set the path
  on that host, reached as ``ssh://user@host:port/path`` with the same key and
  ``known_hosts`` rules as the restic plugin (the host must run ``borg serve``).
- ``config.password`` (``${VAR}`` works), else ``RESTIC_PASSWORD`` from .env: one
  repository secret per project. It travels only in ``BORG_PASSPHRASE``.
- The repository is created on first use (``borg init --encryption=repokey-blake2``).
- Retention uses the project's ``retention:`` keys with borg's meanings (``borg
  prune``); ``borg compact`` reclaims the space when the core asks for it.
- borg's own files (cache, keys of known repositories) live under
  ``{BACKUP_BASE_DIR}/.cache/borg``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from attrs import frozen

from backupctl_core import (
    CacheInfo,
    CheckResult,
    GlobalSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    PruneResult,
    Reclaim,
    Secret,
    Snapshot,
    SyncResult,
    hookimpl,
)
from backupctl_core.plugin_kit import (
    ToolResult,
    child_env,
    folder_creation_problem,
    run_tool,
    stderr_lines,
    structure_config,
    tool_error,
    tools_check,
)
from backupctl_core.plugin_kit import ssh as ssh_kit

TYPE = "borg"
PROGRAM = "borg"
INSTALL_HINT = "install borgbackup"
TIMEOUT_SECONDS = 6 * 3600
# Failures retrying cannot fix, and those that mean "cannot reach it" (exit code 4).
PERMANENT = ("passphrase supplied", "is not a valid repository", "permission denied")
UNREACHABLE = ("connection closed by remote host", "could not resolve", "connection refused")


# -- settings -----------------------------------------------------------------------


@frozen
class BorgConfig:
    """``storage.config`` of a borg project."""

    repository_path: str
    password: Secret | None = None  # else RESTIC_PASSWORD: one repository secret per project


WHERE = "storage.config"


def read_config(project: ProjectSettings) -> tuple[BorgConfig | None, list[str]]:
    config, problems = structure_config(BorgConfig, project.storage.config, WHERE)
    if config is not None and not config.repository_path.strip():
        return None, [f"{WHERE}.repository_path: must not be empty"]
    return config, problems


def _config(project: ProjectSettings) -> BorgConfig:
    config, problems = read_config(project)
    if config is None:
        raise PluginError("; ".join(problems), retryable=False)
    return config


def repository(project: ProjectSettings, settings: GlobalSettings) -> str:
    """The repository borg is given (``BORG_REPO``): a local path or an ssh:// URL."""
    path = _config(project).repository_path.strip()
    ssh = settings.ssh
    if not ssh.host:
        return str(Path(path).expanduser().absolute())
    login = f"{ssh.user}@{ssh.host}" if ssh.user else str(ssh.host)
    # borg's ssh:// URLs: an absolute path as it is, a relative one below the home
    return f"ssh://{login}:{ssh.port}{path if path.startswith('/') else '/./' + path}"


NO_PASSPHRASE = f"{WHERE}.password: not set, and RESTIC_PASSWORD is not set in .env"


def passphrase(project: ProjectSettings, settings: GlobalSettings) -> str:
    value = _config(project).password
    if value is not None:
        return value.reveal()
    if settings.restic_password is not None:
        return settings.restic_password.reveal()
    raise PluginError(NO_PASSPHRASE, retryable=False)


def borg_home(settings: GlobalSettings) -> Path:
    return settings.backup_base_dir / ".cache" / "borg"


def _ssh_argv(settings: GlobalSettings) -> list[str]:
    """borg's ssh (``BORG_RSH``): key, known_hosts beside the key, never trust an
    unknown host."""
    ssh = settings.ssh
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    if ssh.key_path is not None:
        key = Path(ssh.key_path).expanduser()
        argv += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        known = key.parent / "known_hosts"
        if known.is_file():
            if '"' in str(known):  # ssh reads an -o value like a config line
                raise PluginError(
                    f"{known}: a path with a double quote cannot be given to ssh",
                    retryable=False,
                )
            argv += ["-o", f'UserKnownHostsFile="{known}"']
    return argv


def environment(project: ProjectSettings, settings: GlobalSettings) -> dict[str, str]:
    """borg's whole environment: the repository, its passphrase and where borg keeps
    its files; nothing else of ours (``child_env``)."""
    home = borg_home(settings)
    env = {
        "BORG_REPO": repository(project, settings),
        "BORG_PASSPHRASE": passphrase(project, settings),
        "BORG_BASE_DIR": str(home),
        "BORG_DISPLAY_PASSPHRASE": "no",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "no",
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "no",
    }
    if settings.ssh.host:
        argv = _ssh_argv(settings)
        shared = ssh_kit.socket_of(project.name)  # the run's one connection, if held
        # borg splits BORG_RSH like a shell (shlex): quoted, a key folder may hold spaces.
        env["BORG_RSH"] = shlex.join([*argv, *(ssh_kit.control_options(shared) if shared else [])])
    return child_env(env)


@hookimpl
def backupctl_run_session(
    project: ProjectSettings, settings: GlobalSettings
) -> AbstractContextManager[None] | None:
    """Over SSH: one connection for the run's borg calls (create, prune, compact)."""
    ssh = settings.ssh
    if not ssh.host or not ssh.shared_connection:
        return None
    options = [*_ssh_argv(settings), "-p", str(ssh.port)]
    login = f"{ssh.user}@{ssh.host}" if ssh.user else str(ssh.host)
    return ssh_kit.shared_connection(project.name, options, login)


# -- running borg -----------------------------------------------------------------


def _run(
    project: ProjectSettings,
    settings: GlobalSettings,
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    init: bool = True,
) -> str:
    """``borg ARGS``; its stdout. The repository is created when it does not exist."""
    env = environment(project, settings)
    borg_home(settings).mkdir(parents=True, exist_ok=True, mode=0o700)
    done = _borg(args, env, cwd=cwd)
    if done.returncode in (0, 1):  # 1: warnings (a file changed while read), still stored
        return done.stdout
    if init and "does not exist" in done.stderr:
        _init(env)
        return _run(project, settings, args, cwd=cwd, init=False)
    raise _error(args[0], done, env)


def _borg(args: Sequence[str], env: dict[str, str], *, cwd: Path | None = None) -> ToolResult:
    return run_tool(
        [PROGRAM, *args], env=env, cwd=cwd, timeout=TIMEOUT_SECONDS, install_hint=INSTALL_HINT
    )


def _init(env: dict[str, str]) -> None:
    done = _borg(["init", "--encryption=repokey-blake2"], env)
    if done.returncode != 0:
        raise _error("init", done, env)


# borg's "Local Exception" report ends with platform lines; the exception says what.
_EXCEPTION_LINE = re.compile(r"^[\w.]+(?:Error|Exception): ")


def _error_line(stderr: str) -> str:
    """The exception of a crash report, else borg's last line (its error comes last)."""
    lines = stderr_lines(stderr)
    crash = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return crash[-1] if crash else lines[-1] if lines else ""


def _error(command: str, done: ToolResult, env: dict[str, str]) -> PluginError:
    return tool_error(
        f"borg {command}", done, secrets=[env.get("BORG_PASSPHRASE")], describe=_error_line,
        permanent=PERMANENT, connectivity=UNREACHABLE,
    )  # fmt: skip


# -- hooks -----------------------------------------------------------------------


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("storage", TYPE, secrets={"password"})]


@hookimpl
def backupctl_validate_config(project: ProjectSettings, settings: GlobalSettings) -> list[str]:
    if project.storage.type != TYPE:
        return []
    problems = read_config(project)[1]
    given = project.storage.config.get("password")  # a Secret or text; blank is not set
    if settings.restic_password is None and not str(given or "").strip():
        problems.append(NO_PASSPHRASE)
    return problems


@hookimpl
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    tools = tools_check([PROGRAM], INSTALL_HINT)
    if tools.status == "fail":
        return [tools]
    if not settings.ssh.host and not Path(repository(project, settings)).exists():
        return [tools, _missing_repository(project, settings)]
    try:
        _run(project, settings, ["info", "--json"], init=False)
    except PluginError as error:
        if "does not exist" in error.message:
            return [tools, _missing_repository(project, settings)]
        return [tools, CheckResult("repository", "fail", error.message)]
    return [tools, CheckResult("repository", "pass", repository(project, settings))]


def _missing_repository(project: ProjectSettings, settings: GlobalSettings) -> CheckResult:
    """A repository that does not exist yet: can the first backup create it? Locally
    the folder's nearest existing parent must be writable; over SSH the user may only
    run ``borg serve``, which cannot be probed without creating the repository."""
    where = repository(project, settings)
    if not settings.ssh.host:
        problem = folder_creation_problem(Path(where))
        if problem:
            return CheckResult("repository", "fail", f"{where} cannot be created: {problem}")
    detail = f"{where} does not exist yet; the first backup creates it"
    return CheckResult("repository", "warn", detail)


@hookimpl
def backupctl_sync(
    project: ProjectSettings, settings: GlobalSettings, paths: Sequence[Path], tags: Sequence[str]
) -> SyncResult:
    sources = [str(Path(path).absolute()) for path in paths]
    missing = [path for path in sources if not Path(path).exists()]
    if not sources or missing:
        what = f"paths do not exist: {', '.join(missing)}" if missing else "no paths given"
        raise PluginError(f"borg create: {what}", retryable=False)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S")
    name = f"{project.name}-{stamp}-{secrets.token_hex(2)}"
    comment = json.dumps({"tags": list(tags), "paths": sources}, ensure_ascii=False)
    comment = comment.replace("{", "{{").replace("}", "}}")  # borg expands {placeholders}
    out = _run(project, settings, ["create", "--json", "--comment", comment, f"::{name}", *sources])
    stats = json.loads(out)["archive"]["stats"]
    return SyncResult(
        snapshot_id=name,
        files_new=int(stats["nfiles"]),
        bytes_added=int(stats["deduplicated_size"]),
    )


@hookimpl
def backupctl_snapshots(project: ProjectSettings, settings: GlobalSettings) -> list[Snapshot]:
    line = "{name}{TAB}{time}{TAB}{comment}{NUL}"
    # borg orders by the full timestamp; its {time} has whole seconds, which would
    # leave two archives of one second in either order ("latest" the wrong one).
    args = ["list", "--glob-archives", f"{project.name}-*", "--sort-by", "timestamp"]
    out = _run(project, settings, [*args, "--format", line])
    found = []
    for record in filter(None, out.split("\0")):
        name, when, comment = [*record.split("\t", 2), "", ""][:3]
        try:
            meta = json.loads(comment) if comment else {}
        except ValueError:
            meta = {}
        time = datetime.strptime(when.strip(), "%a, %Y-%m-%d %H:%M:%S").astimezone(UTC)
        found.append(Snapshot(id=name.strip(), time=time, tags=tuple(meta.get("tags", ())),
                              paths=tuple(meta.get("paths", ()))))  # fmt: skip
    return found[::-1]  # newest first


def _archive(project: ProjectSettings, settings: GlobalSettings, snapshot_id: str) -> str:
    if snapshot_id != "latest":
        return snapshot_id
    snapshots = backupctl_snapshots(project=project, settings=settings)
    if not snapshots:
        raise PluginError(f"borg: no archive of {project.name} yet", retryable=False)
    return snapshots[0].id


@hookimpl
def backupctl_snapshot_stats(
    project: ProjectSettings, settings: GlobalSettings, snapshot_id: str
) -> tuple[int, int]:
    """What ``borg extract`` of the whole archive writes: its items, plus the parent
    folders of its absolute paths that extract creates (a drill counts those too),
    and the bytes of its regular files."""
    archive = _archive(project, settings, snapshot_id)
    out = _run(project, settings, ["list", "--json-lines", f"::{archive}"])
    items: set[PurePosixPath] = set()
    size = 0
    for line in filter(None, out.splitlines()):
        item = json.loads(line)
        items.add(PurePosixPath(item["path"]))
        if item.get("type") == "-":
            size += int(item.get("size") or 0)
    parents = {parent for path in items for parent in path.parents} - {PurePosixPath(".")}
    return len(items | parents), size


@hookimpl
def backupctl_restore(
    project: ProjectSettings,
    settings: GlobalSettings,
    snapshot_id: str,
    target: Path,
    include: Sequence[str] | None,
) -> list[Path]:
    """``borg extract`` in ``target``: the archive's absolute paths recreated below it,
    only ``include`` (exact paths, no patterns) when given."""
    archive = _archive(project, settings, snapshot_id)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    before = _files(target)
    # pp: a path prefix, never a pattern style a top folder's name could spell ("sh:x")
    wanted = [f"pp:{path.lstrip('/')}" for path in include or ()]
    _run(project, settings, ["extract", f"::{archive}", *wanted], cwd=target)
    return sorted(_files(target) - before)


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()}


@hookimpl
def backupctl_prune(
    project: ProjectSettings, settings: GlobalSettings, reclaim: Reclaim
) -> PruneResult:
    """``borg prune`` with the project's retention, then ``borg compact`` (which frees
    the space) as ``reclaim`` says."""
    keep = project.retention
    args = ["prune", "--list", "--glob-archives", f"{project.name}-*"]
    for flag, value in (("--keep-last", keep.keep_last), ("--keep-hourly", keep.keep_hourly),
                        ("--keep-daily", keep.keep_daily), ("--keep-weekly", keep.keep_weekly),
                        ("--keep-monthly", keep.keep_monthly)):  # fmt: skip
        if value:
            args += [flag, str(value)]
    if keep.keep_within:
        args += ["--keep-within", keep.keep_within]
    if len(args) == 4:
        return PruneResult(snapshots_removed=0, space_reclaimed=False)  # nothing to apply
    env = environment(project, settings)
    done = _borg(args, env)
    if done.returncode not in (0, 1):
        raise _error("prune", done, env)
    removed = sum(1 for line in done.stderr.splitlines() if line.startswith("Pruning archive"))
    compact = reclaim is Reclaim.YES or (reclaim is Reclaim.IF_FORGOTTEN and removed > 0)
    if compact:
        _run(project, settings, ["compact"])
    return PruneResult(snapshots_removed=removed, space_reclaimed=compact)


@hookimpl
def backupctl_unlock(project: ProjectSettings, settings: GlobalSettings) -> str:
    try:
        _run(project, settings, ["break-lock"], init=False)
    except PluginError as error:
        if "does not exist" in error.message:
            return "no repository yet: nothing to unlock"
        raise
    return "borg break-lock"


@hookimpl
def backupctl_cache(project: ProjectSettings, settings: GlobalSettings, clear: bool) -> CacheInfo:
    """borg's files of this machine (``BORG_BASE_DIR``): caches and security data."""
    path = borg_home(settings)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
    if clear and path.exists():
        shutil.rmtree(path)
        return CacheInfo(path=path, size_bytes=size, cleared=True)
    return CacheInfo(path=path, size_bytes=size, cleared=False)


@hookimpl
def backupctl_passthrough(
    project: ProjectSettings, settings: GlobalSettings
) -> tuple[dict[str, str], list[str]]:
    """``backupctl restic <project> list``: borg with the repository and passphrase set."""
    os.makedirs(borg_home(settings), mode=0o700, exist_ok=True)
    return environment(project, settings), [PROGRAM]
