"""MongoDB dumper for backupctl.

How this one works:

* dump — ``mongodump --db=<name> --archive=<stem>.archive.gz --gzip``: one gzipped
  archive file, written by mongodump itself (created 0600 before it starts).
* verify — ``gzip -t`` (the whole file, no server needed), then ``mongorestore
  --dryRun --archive=<file> --gzip``, which parses the archive without writing.
* check — the tools are on PATH and the server's port answers. The login is not
  checked (that needs ``mongosh``, which is not always installed): the line is a warning.
* decompress — ``x.archive.gz`` → ``x.archive`` next to it (``mongorestore
  --archive=x.archive`` without ``--gzip`` reads it); the ``.gz`` stays.
* restore guide — ``mongorestore ... --nsFrom='<db>.*' --nsTo='<db>_restored.*'``.

The password reaches the tools only through ``--config=<file>``: a YAML file holding
``password: ...``, created 0600 in the temp folder and removed as soon as the tool
exits. User, host, port and database are on argv, which is fine; the password never is.
Users authenticate against the ``admin`` database (``--authenticationDatabase``).
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from backupctl_core import (
    CheckResult,
    DatabaseSettings,
    DumpArtifact,
    GlobalSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    VerifyResult,
    hookimpl,
)
from backupctl_core.plugin_kit import (
    ToolResult,
    create_private_file,
    database_of,
    missing_keys,
    open_private_file,
    port_problems,
    removed_on_failure,
    require_database,
    run_tool,
    stderr_lines,
    tool_error,
    tools_check,
)

TYPE = "mongo"
INSTALL_HINT = "install the MongoDB Database Tools"
FORMAT = "mongo-archive-gzip"
EXTENSION = ".archive.gz"
DEFAULT_PORT = 27017
AUTH_DATABASE = "admin"
CONNECT_TIMEOUT_SECONDS = 10

# Substrings of the tools' errors, checked in this order: an authentication failure
# also mentions the connection handshake, and it must not be retried.
PERMANENT_ERRORS = (
    "authentication failed",
    "auth error",
    "not authorized",
    "unauthorized",
    "requires authentication",
)
CONNECTIVITY_ERRORS = (
    "server selection",  # "server selection error/timeout": nothing answered in time
    "no reachable servers",
    "connection refused",
    "no such host",
    "i/o timeout",
    "context deadline exceeded",
    "connection reset",
    "could not connect",
)


# -- hooks ---------------------------------------------------------------------


@hookimpl
def backupctl_plugin_types() -> list[PluginType]:
    return [PluginType("database", TYPE)]


@hookimpl
def backupctl_validate_config(project: ProjectSettings, settings: GlobalSettings) -> list[str]:
    db = database_of(project, TYPE)
    if db is None:
        return []
    problems = missing_keys(db, ("host", "name"))  # no user: a server without auth is fine
    if db.user and db.password is None:
        # mongodump would try to prompt for it, and no one is at the terminal.
        problems.append("database.password is required when database.user is set")
    return problems + port_problems(db)


@hookimpl
def backupctl_dump(
    project: ProjectSettings, settings: GlobalSettings, target_stem: Path
) -> DumpArtifact:
    db = require_database(project, TYPE)
    path = target_stem.with_name(target_stem.name + EXTENSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    with removed_on_failure(path):  # never leave a partial dump behind
        create_private_file(path)  # mongodump truncates the file and keeps its mode
        archive = [f"--db={db.name}", f"--archive={path}", "--gzip"]
        _run("mongodump", archive, db, limit_minutes=db.dump_timeout_minutes)
        path.chmod(0o600)  # in case the tool replaced the file
    return DumpArtifact(path=path, size_bytes=path.stat().st_size, format=FORMAT)


@hookimpl
def backupctl_verify(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> VerifyResult:
    db = require_database(project, TYPE)
    path = Path(artifact.path)
    if not path.is_file():
        return VerifyResult(False, f"dump file missing: {path}")
    try:
        _gunzip(path, None)
        _run("mongorestore", ["--dryRun", f"--archive={path}", "--gzip"], db)
    except PluginError as exc:
        return VerifyResult(False, exc.message)
    return VerifyResult(True, "gzip intact, mongorestore --dryRun read the archive")


@hookimpl
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    db = database_of(project, TYPE)
    if db is None:
        return []
    tools = tools_check(["mongodump", "mongorestore"], INSTALL_HINT)
    if tools.status == "fail":
        return [tools]
    where = f"{db.host}:{db.port or DEFAULT_PORT}"
    try:
        with socket.create_connection(
            (str(db.host), db.port or DEFAULT_PORT), timeout=CONNECT_TIMEOUT_SECONDS
        ):
            pass
    except OSError as exc:
        return [tools, CheckResult("database", "fail", f"mongo {where} unreachable: {exc}")]
    login = "login not checked before dump"
    return [tools, CheckResult("database", "warn", f"mongo {where} reachable; {login}")]


@hookimpl
def backupctl_decompress(
    project: ProjectSettings, settings: GlobalSettings, path: Path
) -> Path | None:
    """``x.archive.gz`` → ``x.archive`` next to it (0600); other files: None."""
    if not path.name.endswith(EXTENSION):
        return None
    plain = path.with_name(path.name.removesuffix(".gz"))
    with removed_on_failure(plain), open_private_file(plain) as out:
        _gunzip(path, out)
    return plain


@hookimpl
def backupctl_restore_guide(
    project: ProjectSettings, settings: GlobalSettings, dump_file: Path
) -> list[str]:
    """mongorestore into a fresh database; it asks for the password."""
    db = require_database(project, TYPE)
    if dump_file.name.endswith(EXTENSION):
        archive = [f"--archive={dump_file}", "--gzip"]
    elif dump_file.name.endswith(".archive"):
        archive = [f"--archive={dump_file}"]
    else:
        return []
    new = f"{db.name}_restored"
    command = [
        "mongorestore",
        *_connection_args(db),
        f"--nsInclude={db.name}.*",
        f"--nsFrom={db.name}.*",
        f"--nsTo={new}.*",
        *archive,
    ]
    return [
        f"# Restore into a new database {new} (any name will do); mongorestore asks for "
        "the password.",
        shlex.join(command),
        f"# To restore into {db.name} itself, leave out --nsFrom and --nsTo; add --drop to "
        "replace its collections.",
    ]


# -- helpers -------------------------------------------------------------------


def _connection_args(db: DatabaseSettings) -> list[str]:
    """Where to connect and as whom — everything except the password."""
    args = [f"--host={db.host}", f"--port={db.port or DEFAULT_PORT}"]
    if db.user:
        args += [f"--username={db.user}", f"--authenticationDatabase={AUTH_DATABASE}"]
    return args


@contextmanager
def _config_file(db: DatabaseSettings) -> Iterator[list[str]]:
    """``--config=<file>``: a 0600 YAML file with the password, removed afterwards."""
    if db.password is None:
        yield []
        return
    fd, name = tempfile.mkstemp(prefix="backupctl-mongo-", suffix=".yaml")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as config:
            # A JSON string is a YAML double-quoted scalar: quotes, backslashes and
            # control characters stay intact.
            config.write(f"password: {json.dumps(db.password.reveal(), ensure_ascii=False)}\n")
        yield [f"--config={name}"]
    finally:
        os.unlink(name)


def _run(
    tool: str, args: list[str], db: DatabaseSettings, limit_minutes: int | None = None
) -> None:
    """Run mongodump/mongorestore with the credentials; PluginError unless it exits 0."""
    with _config_file(db) as config:
        argv = [tool, *config, *_connection_args(db), *args]
        # the password is in the --config file, nothing else secret: the default env
        result = run_tool(
            argv, stdout=subprocess.DEVNULL, install_hint=INSTALL_HINT,
            timeout=limit_minutes * 60 if limit_minutes else None,
            limit=f"{limit_minutes} min (database.dump_timeout_minutes)" if limit_minutes else None,
        )  # fmt: skip
    if result.returncode != 0:
        raise _error(tool, result, db)


def _gunzip(path: Path, out: IO[bytes] | None) -> None:
    """Decompress ``path`` into ``out``, or only test it (``gzip -t``) when ``out`` is None."""
    argv = ["gzip", "-dc" if out is not None else "-t", "--", str(path)]
    result = run_tool(argv, stdout=out or subprocess.DEVNULL, install_hint="install gzip")
    if result.returncode != 0:
        problem = _first_error_line(result.stderr) or f"gzip exited with code {result.returncode}"
        raise PluginError(f"{path.name} is not a valid gzip file: {problem}", retryable=False)


def _first_error_line(stderr: str) -> str:
    """The most telling line of the tool's log, without its timestamp.

    Not the kit's ``first_error_line``: the tools log progress first and the
    ``Failed: ...`` summary last, so the fallback is the last line, not the first.
    """
    lines = stderr_lines(stderr)
    for line in lines:
        if "Failed:" in line:
            return line[line.index("Failed:") :]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


def _error(tool: str, result: ToolResult, db: DatabaseSettings) -> PluginError:
    return tool_error(
        tool, result, secrets=[db.password], describe=_first_error_line,
        permanent=PERMANENT_ERRORS, connectivity=CONNECTIVITY_ERRORS,
    )  # fmt: skip
