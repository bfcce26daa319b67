"""A third-party dumper for backupctl: a folder, archived with tar and gzip.

backupctl finds this module through the entry point in pyproject.toml::

    [project.entry-points.backupctl]
    tarfiles = "backupctl_example_tar.plugin"

and calls its hooks only for projects that say::

    database:
      type: tarfiles
      name: /srv/app/data        # the folder to archive (absolute path)

The dump is ``{target_stem}.tar.gz`` (``tar -czf - -C <folder> .``, streamed into
a file created 0600); verify lists it with ``tar -tzf``. A hook may take any
subset of its hookspec's arguments: these take only what they use.
"""

from __future__ import annotations

import gzip
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from backupctl_core import (
    CheckResult,
    DumpArtifact,
    PluginError,
    PluginType,
    ProjectSettings,
    VerifyResult,
    hookimpl,
)
from backupctl_core.plugin_kit import open_private_file, removed_on_failure

TYPE = "tarfiles"  # the database.type this plugin answers to
FORMAT = "tar-gzip"  # recorded in the audit log with each dump
EXTENSION = ".tar.gz"


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("database", TYPE)]


@hookimpl
def backupctl_validate_config(project: ProjectSettings) -> list[str]:
    """Only keys are checked here (``config validate``); the folder itself in check."""
    name = project.database.name if project.database else None
    if not name:
        return ["database.name is required (the folder to archive)"]
    if not Path(name).is_absolute():
        return [f"database.name must be an absolute path, got {name!r}"]
    return []


@hookimpl
def backupctl_check(project: ProjectSettings) -> list[CheckResult]:
    """For ``run --dry-run`` and ``health``: read-only."""
    folder = _folder(project)
    if shutil.which("tar") is None:
        return [CheckResult("database", "fail", "tar is not installed (not on PATH)")]
    if not folder.is_dir():
        return [CheckResult("database", "fail", f"folder not found: {folder}")]
    if not os.access(folder, os.R_OK | os.X_OK):
        return [CheckResult("database", "fail", f"folder not readable: {folder}")]
    return [CheckResult("database", "pass", f"folder {folder} readable")]


@hookimpl
def backupctl_dump(project: ProjectSettings, target_stem: Path) -> DumpArtifact:
    folder = _folder(project)
    if not folder.is_dir():
        # Retrying will not make the folder appear: retryable=False.
        raise PluginError(f"folder not found: {folder}", retryable=False)
    target = target_stem.with_name(target_stem.name + EXTENSION)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Argument list, no shell; the archive streams from tar's stdout into a file
    # that is 0600 before the first byte is written.
    argv = ["tar", "--create", "--gzip", "--file=-", f"--directory={folder}", "."]
    with removed_on_failure(target):  # never leave a partial dump behind
        try:
            with open_private_file(target) as out:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)
        except FileNotFoundError:
            raise PluginError("tar is not installed (not on PATH)", retryable=False) from None
        if done.returncode != 0:
            # GNU tar: 1 = a file changed while it was read (worth another try),
            # 2 = fatal (unreadable file, ...), which retrying cannot fix.
            raise PluginError(
                f"tar of {folder} failed (exit {done.returncode}): {_last_line(done.stderr)}",
                retryable=done.returncode == 1,
            )
    return DumpArtifact(path=target, size_bytes=target.stat().st_size, format=FORMAT)


@hookimpl
def backupctl_verify(artifact: DumpArtifact) -> VerifyResult:
    """``tar -tzf`` reads the whole archive: a truncated or corrupt one fails."""
    path = Path(artifact.path)
    if not path.is_file():
        return VerifyResult(False, f"dump file missing: {path}")
    entries = 0
    with subprocess.Popen(
        ["tar", "--list", "--gzip", f"--file={path}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        for _ in proc.stdout or ():  # counted line by line: the listing may be long
            entries += 1
        error = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0:
        return VerifyResult(False, f"tar -tzf: {_last_line(error)}")
    if entries == 0:
        return VerifyResult(False, "tar -tzf: the archive is empty")
    return VerifyResult(True, f"tar -tzf: {entries} entries")


@hookimpl
def backupctl_decompress(path: Path) -> Path | None:
    """``x.tar.gz`` → ``x.tar`` next to it (``restore --decompress``)."""
    if not path.name.endswith(EXTENSION):
        return None  # not ours
    plain = path.with_name(path.name.removesuffix(".gz"))
    with open_private_file(plain) as out, gzip.open(path, "rb") as packed:
        shutil.copyfileobj(packed, out, 1024 * 1024)
    return plain


@hookimpl
def backupctl_restore_guide(project: ProjectSettings, dump_file: Path) -> list[str]:
    """``restore --guide``: unpack beside the live folder; the operator swaps it in."""
    live = _folder(project)
    restored = shlex.quote(str(live.with_name(live.name + ".restored")))
    return [
        f"mkdir {restored}",
        f"tar -xzf {shlex.quote(str(dump_file))} -C {restored}",
        f"# check it, then replace {shlex.quote(str(live))} with {restored}",
    ]


def _folder(project: ProjectSettings) -> Path:
    if project.database is None or not project.database.name:
        raise PluginError("database.name (the folder to archive) is not set", retryable=False)
    return Path(project.database.name).expanduser()


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no error output"
