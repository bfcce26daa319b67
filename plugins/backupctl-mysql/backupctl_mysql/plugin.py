"""MySQL and MariaDB dumper for backupctl.

How this one works:

* dump — ``mysqldump <options> <database> | gzip --rsyncable > <stem>.sql.gz``: two
  processes joined by a pipe, so no dump byte passes through Python and no uncompressed
  copy touches the disk. ``--rsyncable`` restarts the compressor at content-defined
  points, so a change to some rows leaves the rest of the file as it was and restic
  stores only the changed part again (+1% size; docs/storage.md). The dump counts
  only if mysqldump AND gzip exit 0 AND the uncompressed stream ends with
  mysqldump's ``-- Dump completed`` trailer: a mysqldump that dies half-way still
  leaves a perfectly valid gzip file.
  With ``compression.enabled: false`` mysqldump writes ``<stem>.sql`` itself, no gzip:
  plain SQL that restic can deduplicate and compress (docs/storage.md).
* verify — ``gzip -dc <file> | tail -c 512``: gzip checks every block and the
  length/CRC trailer (what ``gunzip -t`` checks), ``tail`` hands us the end of the
  SQL, where the ``-- Dump completed`` line must be. A plain ``.sql`` has no checksum:
  its last 512 bytes must end with that whole line, newline included.
* check — ``mysql --execute='SELECT 1' <database>`` with the real credentials.
* decompress — ``x.sql.gz`` → ``x.sql`` next to it; the ``.gz`` stays. A ``.sql``: None.
* restore guide — ``CREATE DATABASE``, then ``gunzip -c x.sql.gz | mysql ... <new db>``
  (``mysql ... <new db> < x.sql`` for a plain dump).

The dump holds one database's tables, views, routines, triggers and events but no
``CREATE DATABASE``/``USE`` (mysqldump without ``--databases``): the operator names
the database it goes into, so importing into a fresh database under another name is
as easy as importing over the original.

Credentials (host, port, user, password) reach the tools as an option file read from
an inherited pipe, ``--defaults-file=/dev/fd/N``: never on argv, never in
``MYSQL_PWD`` (deprecated), never on disk. It must be the first option. We use
``--defaults-file`` rather than ``--defaults-extra-file`` on purpose: with the latter
the client reads ``~/.my.cnf`` afterwards, and a password there wins over ours.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from backupctl_core import (
    CheckResult,
    DatabaseSettings,
    DumpArtifact,
    DumpManifest,
    GlobalSettings,
    PluginError,
    PluginType,
    ProjectSettings,
    VerifyResult,
    hookimpl,
)
from backupctl_core.plugin_kit import (
    ToolResult,
    child_env,
    database_of,
    failed_database_check,
    first_error_line,
    manifest_beside,
    missing_keys,
    open_private_file,
    port_problems,
    read_captured,
    removed_on_failure,
    require_database,
    run_tool,
    tool_error,
    tools_check,
)

TYPE = "mysql"
INSTALL_HINT = "Debian: apt-get install mariadb-client gzip"
SECONDS_PER_MINUTE = 60  # dump_timeout_minutes' unit (a test shortens it)
FORMAT = "mysql-sql-gzip"
EXTENSION = ".sql.gz"
PLAIN_FORMAT = "mysql-sql"  # compression.enabled: false
PLAIN_EXTENSION = ".sql"
# Deduplication-friendly output; from stdin gzip writes no name and no time either.
GZIP = ["gzip", "-c", "--rsyncable"]
DEFAULT_PORT = 3306
CONNECT_TIMEOUT_SECONDS = 10
TRAILER = b"-- Dump completed"
TAIL_BYTES = 512
CHARSET_NAME = re.compile(r"[A-Za-z0-9_]+")  # character set and collation names

DUMP_OPTIONS = (
    "--single-transaction",  # one consistent InnoDB snapshot, without locking tables
    "--quick",  # stream rows instead of buffering each table in mysqldump's memory
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",  # binary columns as 0x... literals, safe in any client character set
    "--default-character-set=utf8mb4",  # emoji survive
    "--no-tablespaces",  # one database needs none; MySQL 8 wants PROCESS privilege for them
    "--comments",  # writes the "-- Dump completed" trailer that proves the dump finished
)
# Options only MySQL's mysqldump knows (MariaDB's rejects them): added when --help lists them.
IF_SUPPORTED = {
    "--set-gtid-purged": "--set-gtid-purged=OFF",  # no GTID_PURGED: imports on any server
    "--column-statistics": "--column-statistics=0",  # a MariaDB server has no histograms table
}

# Substrings of client errors, checked in this order.
PERMANENT_ERRORS = (
    "access denied",  # 1045 wrong password, 1044 no rights on the database
    "unknown database",  # 1049
    "is not allowed to connect",  # 1130
    "authentication plugin",
)
CONNECTIVITY_ERRORS = (
    "can't connect",  # 2002/2003: refused, no socket, timeout
    "unknown server host",  # 2005 (MariaDB)
    "unknown mysql server host",  # 2005 (MySQL)
    "lost connection",  # 2013
    "server has gone away",  # 2006
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
    problems = missing_keys(db, ("host", "name"))
    if db.name and db.name.startswith("-"):  # mysqldump would read it as an option
        problems.append("database.name must not start with '-'")
    return problems + missing_keys(db, ("user",)) + port_problems(db)


@hookimpl
def backupctl_dump(
    project: ProjectSettings, settings: GlobalSettings, target_stem: Path
) -> DumpArtifact:
    db = require_database(project, TYPE)
    compress = project.compression.enabled
    extension, format_ = (EXTENSION, FORMAT) if compress else (PLAIN_EXTENSION, PLAIN_FORMAT)
    path = target_stem.with_name(target_stem.name + extension)
    path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["mysqldump", *DUMP_OPTIONS, *_version_specific_options(db), str(db.name)]
    with removed_on_failure(path):  # never leave a partial dump behind
        _dump_through_gzip(argv, db, path, compress=compress)
        _dump_trailer(path)  # raises when the SQL does not end with "-- Dump completed"
    return DumpArtifact(path=path, size_bytes=path.stat().st_size, format=format_)


@hookimpl
def backupctl_verify(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> VerifyResult:
    path = Path(artifact.path)
    if not path.is_file():
        return VerifyResult(False, f"dump file missing: {path}")
    try:
        trailer = _dump_trailer(path)
    except PluginError as exc:
        return VerifyResult(False, exc.message)
    if not _is_gzip(path):
        return VerifyResult(True, f"plain SQL, ends with '{trailer}'")
    return VerifyResult(True, f"gzip intact, ends with '{trailer}'")


@hookimpl
def backupctl_manifest(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> DumpManifest | None:
    """Tables and exact row counts, read from the dump itself (see drill.py)."""
    from backupctl_mysql import drill

    db = database_of(project, TYPE)
    if db is None or artifact.format not in (FORMAT, PLAIN_FORMAT):
        return None
    return drill.dump_manifest(Path(artifact.path), db)


@hookimpl
def backupctl_scratch_database(
    project: ProjectSettings, settings: GlobalSettings, name: str
) -> Any:
    from backupctl_mysql import drill

    db = database_of(project, TYPE)
    return drill.MysqlScratchDatabase(project, db, name) if db is not None else None


@hookimpl
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    db = database_of(project, TYPE)
    if db is None:
        return []
    needed = ["mysqldump", "mysql"] + (["gzip"] if project.compression.enabled else [])
    tools = tools_check(needed, "install mariadb-client or mysql-client, and gzip")
    if tools.status == "fail":
        return [tools]
    argv = [
        "mysql",
        f"--connect-timeout={CONNECT_TIMEOUT_SECONDS}",
        "--batch",
        "--skip-column-names",
        "--execute=SELECT 1",
        str(db.name),
    ]
    try:
        with _credentials(db) as fd, tempfile.TemporaryFile() as errors:
            proc = _start(argv, fd, stdout=subprocess.DEVNULL, stderr=errors)
            try:
                code = proc.wait(timeout=3 * CONNECT_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise PluginError("mysql timed out", connectivity=True) from None
            if code != 0:
                raise _error("mysql", code, read_captured(errors), db)
    except PluginError as exc:
        return [tools, failed_database_check(exc)]
    where = f"{db.user}@{db.host}:{db.port or DEFAULT_PORT}/{db.name}"
    return [tools, CheckResult("database", "pass", f"mysql {where} reachable, login ok")]


@hookimpl
def backupctl_decompress(
    project: ProjectSettings, settings: GlobalSettings, path: Path
) -> Path | None:
    """``x.sql.gz`` → ``x.sql`` next to it (streamed by gzip, 0600); other files (a
    plain ``x.sql`` dump too, which needs no decompressing): None."""
    if not path.name.endswith(EXTENSION):
        return None
    plain = path.with_name(path.name.removesuffix(".gz"))
    with (
        removed_on_failure(plain),
        open_private_file(plain) as out,
        tempfile.TemporaryFile() as errors,
    ):
        proc = _start(["gzip", "-dc", "--", str(path)], stdout=out, stderr=errors)
        if proc.wait() != 0:
            problem = first_error_line(read_captured(errors))
            raise PluginError(f"gunzip {path.name}: {problem}", retryable=False)
    return plain


@hookimpl
def backupctl_restore_guide(
    project: ProjectSettings, settings: GlobalSettings, dump_file: Path, snapshot_id: str
) -> list[str]:
    """One command: ``CREATE DATABASE`` with the database's own character set,
    collation and comment, then the dump, in one mysql session that stops at the
    first error, so a database that exists already is never merged into."""
    db = require_database(project, TYPE)
    if dump_file.name.endswith(EXTENSION):
        read = f"gunzip -c {shlex.quote(str(dump_file))}"
    elif dump_file.name.endswith(PLAIN_EXTENSION):  # a plain dump, or a decompressed one
        read = f"cat {shlex.quote(str(dump_file))}"
    else:
        return []
    manifest = manifest_beside(dump_file)
    if manifest is None and dump_file.name.endswith(PLAIN_EXTENSION):
        manifest = manifest_beside(dump_file.with_name(dump_file.name + ".gz"))
    options = dict(manifest.database_options) if manifest else {}
    new = f"{db.name}_restored_{snapshot_id[:8]}"
    mysql = shlex.join(
        [
            "mysql",
            f"--host={db.host}",
            f"--port={db.port or DEFAULT_PORT}",
            f"--user={db.user}",
            "--password",  # asks on the terminal; the dump still comes through stdin
            "--default-character-set=utf8mb4",
        ]
    )

    def session(first: str) -> str:
        return f"{{ printf '%s\\n' {shlex.quote(first)}; {read}; }} | {mysql}"

    create = f"{_create_database(new, options)} USE {_quote_name(new)};"
    replace = (
        f"DROP DATABASE IF EXISTS {_quote_name(str(db.name))};"
        f" {_create_database(str(db.name), options)} USE {_quote_name(str(db.name))};"
    )
    confirm = shlex.quote(f"Drop {db.name} and recreate it from the dump? [y/N] ")
    guide = [
        f"# Import into a new database {new} (any name will do); mysql asks for the "
        "password. A database of that name that exists already stops it: nothing merged.",
        session(create),
        f"# To replace {db.name} itself, stop the application first: this DROPS {db.name}"
        " (tables made since the backup go too) and recreates it from the dump:",
        f'#   read -r -p {confirm} answer && [ "$answer" = y ] && {session(replace)}',
    ]
    if manifest is None:
        guide.append(
            "# No manifest beside the dump: the database gets utf8mb4 with the server's"
            " default collation, and no comment."
        )
    return guide


def _create_database(name: str, options: dict[str, Any]) -> str:
    """``CREATE DATABASE`` with the stored character set, collation and comment."""
    charset, collation = options.get("charset"), options.get("collation")
    if not (charset and CHARSET_NAME.fullmatch(str(charset))):
        charset, collation = "utf8mb4", None  # not a name we recorded: the safe default
    text = f"CREATE DATABASE {_quote_name(name)} CHARACTER SET {charset}"
    if collation and CHARSET_NAME.fullmatch(str(collation)):
        text += f" COLLATE {collation}"
    if options.get("comment"):
        text += " COMMENT " + _quote_string(str(options["comment"]))
    return text + ";"


def _quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- helpers -------------------------------------------------------------------


def _option_file(db: DatabaseSettings) -> str:
    """A ``[client]`` option file with the connection and the password, values quoted."""
    values = {
        "host": db.host,
        "port": str(db.port or DEFAULT_PORT),
        "user": db.user,
        "password": db.password.reveal() if db.password is not None else None,
    }
    lines = ["[client]"]
    for key, value in values.items():
        if value is not None:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            escaped = escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


@contextmanager
def _credentials(db: DatabaseSettings) -> Iterator[int]:
    """The read end of a pipe holding the option file, for one child to inherit.

    The whole file is written (it fits in the pipe's buffer) and the write end closed
    before the child starts, so the child reads it to EOF like a file on disk.
    """
    read_fd, write_fd = os.pipe()
    try:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(_option_file(db).encode())
        yield read_fd
    finally:
        os.close(read_fd)


def _start(
    argv: list[str], credentials: int | None = None, **kwargs: Any
) -> subprocess.Popen[bytes]:
    """Start a client tool; with ``credentials`` (a pipe from ``_credentials``) the tool
    inherits it and reads it through ``--defaults-file=/dev/fd/N``, its first option."""
    env = child_env()  # the password travels in the credentials pipe, nothing else secret
    if credentials is not None:
        argv = [argv[0], f"--defaults-file=/dev/fd/{credentials}", *argv[1:]]
        kwargs["pass_fds"] = (credentials,)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    try:
        return subprocess.Popen(argv, env=env, **kwargs)
    except FileNotFoundError:
        raise PluginError(
            f"{argv[0]} not found on PATH ({INSTALL_HINT})", retryable=False
        ) from None


def _dump_through_gzip(
    argv: list[str], db: DatabaseSettings, path: Path, *, compress: bool = True
) -> None:
    """``argv | gzip --rsyncable > path``; raises PluginError unless both exit 0.

    Without ``compress``: ``argv > path``, no gzip.
    """
    with (
        _credentials(db) as credentials,
        open_private_file(path) as out,
        tempfile.TemporaryFile() as dump_errors,
        tempfile.TemporaryFile() as gzip_errors,
    ):
        running: list[subprocess.Popen[bytes]] = []
        limit = db.dump_timeout_minutes
        deadline = time.monotonic() + limit * SECONDS_PER_MINUTE if limit else None

        def wait(proc: subprocess.Popen[bytes]) -> int:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:  # the finally below kills the pipeline
                raise PluginError(
                    f"mysqldump timed out after {limit} min (database.dump_timeout_minutes)",
                    retryable=False,
                ) from None

        try:
            if not compress:
                dump = _start(argv, credentials, stdout=out, stderr=dump_errors)
                running.append(dump)
                gzip_code, dump_code = 0, wait(dump)
            else:
                dump = _start(argv, credentials, stdout=subprocess.PIPE, stderr=dump_errors)
                running.append(dump)
                assert dump.stdout is not None
                gzip = _start(GZIP, stdin=dump.stdout, stdout=out, stderr=gzip_errors)
                running.append(gzip)
                dump.stdout.close()  # gzip holds the read end: if it dies, mysqldump gets SIGPIPE
                gzip_code, dump_code = wait(gzip), wait(dump)
        finally:
            for proc in running:  # interrupted: stop the children
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if dump_code != 0:
            raise _error("mysqldump", dump_code, read_captured(dump_errors), db)
        if gzip_code != 0:
            raise PluginError(f"gzip failed: {first_error_line(read_captured(gzip_errors))}")


def _dump_trailer(path: Path) -> str:
    """The ``-- Dump completed`` line that ends the SQL in ``path``; PluginError if none.

    ``gzip -dc`` reads the whole file (checking it like ``gunzip -t``) and ``tail``
    keeps only the last bytes, so the SQL never passes through Python. A plain ``.sql``
    has no checksum to catch a cut: there the trailer line must end with its newline.
    """
    if not _is_gzip(path):
        with path.open("rb") as sql:
            sql.seek(max(0, sql.seek(0, os.SEEK_END) - TAIL_BYTES))
            end = sql.read()
        if not end.endswith(b"\n"):
            raise PluginError(f"{path.name} ends in the middle of a line: the file is cut short")
        return _trailer_line(path, end)
    with tempfile.TemporaryFile() as errors:
        gunzip = _start(["gzip", "-dc", "--", str(path)], stdout=subprocess.PIPE, stderr=errors)
        try:
            tail = subprocess.run(
                ["tail", "-c", str(TAIL_BYTES)],
                stdin=gunzip.stdout,
                capture_output=True,
                env=child_env(),
            )
        finally:
            assert gunzip.stdout is not None
            gunzip.stdout.close()
            code = gunzip.wait()
        if code != 0:
            problem = first_error_line(read_captured(errors)) or f"gzip exited with code {code}"
            raise PluginError(f"{path.name} is not a valid gzip file: {problem}")
    if tail.returncode != 0:
        raise PluginError(f"tail exited with code {tail.returncode} reading {path.name}")
    return _trailer_line(path, tail.stdout)


def _trailer_line(path: Path, end: bytes) -> str:
    """The last line of ``end`` (the end of the SQL) if it is mysqldump's trailer."""
    last_line = end.rstrip().rsplit(b"\n", 1)[-1]
    if not last_line.startswith(TRAILER):
        raise PluginError(
            f"{path.name} does not end with '-- Dump completed': mysqldump stopped early"
        )
    return last_line.decode(errors="replace")


def _is_gzip(path: Path) -> bool:
    """By the name, as the dump wrote it: ``.sql.gz`` is gzip, a plain ``.sql`` is not."""
    return path.name.endswith(EXTENSION)


def _version_specific_options(db: DatabaseSettings) -> list[str]:
    """The ``IF_SUPPORTED`` options this mysqldump lists in its ``--help``; and
    ``--dump-history`` (MariaDB 10.11+) when the database has system-versioned
    tables, whose history a dump would otherwise drop."""
    try:
        help_text = run_tool(
            ["mysqldump", "--no-defaults", "--help"], timeout=30, install_hint=INSTALL_HINT
        ).stdout
    except PluginError:
        return []  # the dump itself reports a missing mysqldump
    options = [option for flag, option in IF_SUPPORTED.items() if flag in help_text]
    if "--dump-history" in help_text and _has_versioned_tables(db):
        options.append("--dump-history")
    return options


def _has_versioned_tables(db: DatabaseSettings) -> bool:
    from backupctl_mysql.drill import run_mysql

    query = (
        "--execute=SELECT COUNT(*) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_type = 'SYSTEM VERSIONED'"
    )
    try:
        return run_mysql(db, ["--skip-column-names", query, str(db.name)]).strip() not in ("", "0")
    except PluginError:
        return False  # the dump itself says what is wrong with the connection


def _quote_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _error(tool: str, returncode: int, stderr: str, db: DatabaseSettings) -> PluginError:
    """A one-line PluginError without the password, permanent or retryable by its text."""
    return tool_error(
        tool, ToolResult(returncode, "", stderr), secrets=[db.password], prefixed=False,
        permanent=PERMANENT_ERRORS, connectivity=CONNECTIVITY_ERRORS,
    )  # fmt: skip
