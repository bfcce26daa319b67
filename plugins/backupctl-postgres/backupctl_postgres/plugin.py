"""PostgreSQL dumper for backupctl.

A dumper is a module of ``@hookimpl`` functions, registered through the
``backupctl`` entry-point group (see this package's pyproject.toml). The core
calls these hooks only for projects whose ``database.type`` is ``postgres``.

How this one works:

* dump   — ``pg_dump --format=custom --file=<stem>.dump`` (compressed, restorable
  with ``pg_restore``); the file is created 0600 before pg_dump writes to it. It
  dumps the snapshot of a psql session that counts each table's rows meanwhile, for
  the manifest (snapshot.py). With
  ``compression.enabled: false``, ``--compress=0``: the same format, uncompressed,
  so restic can deduplicate unchanged rows and compress the rest (docs/storage.md).
* verify — ``pg_restore --list`` (counts the entries), then the last data block
  alone restored into /dev/null: ``--list`` reads only the table of contents and
  accepts a dump cut in half, and pg_dump writes the data blocks in table-of-contents
  order, so the file ends with that block. Reading every block instead costs a
  second full decompression (7% of a run, bench/README.md Finding 4).
* check  — ``psql -c 'SHOW server_version'`` with the real credentials, so a wrong
  password fails the check instead of passing a mere ping; then the pg_dump the
  dump would use must be as new as that server (below).
* which pg_dump — ``database.pg_dump_path`` when set, else ``pg_dump`` on PATH. When
  that one is older than the server (pg_dump refuses: "server version mismatch"),
  the lowest major at least the server's in ``/usr/lib/postgresql/N/bin`` (where
  Debian, Ubuntu and apt.postgresql.org install each major side by side), or a
  permanent error naming both versions and the fix. pg_restore (verify, decompress)
  is the newest installed: it reads archives of every older pg_dump.
* decompress — ``x.dump`` → ``x.sql`` (``pg_restore --no-owner --file``) next to it.
* restore guide — ``createdb`` a new database, then ``pg_restore --no-owner`` into it
  (``psql --file`` for the plain SQL).

Rules every dumper should keep: argv lists, never a shell; the password only
in the child's environment (``PGPASSWORD``), never on its command line; big
output streamed to files; stderr kept for one-line error messages; a
``PluginError`` that says whether retrying could help.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
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
    create_private_file,
    database_of,
    failed_database_check,
    first_error_line,
    manifest_beside,
    missing_keys,
    port_problems,
    read_captured,
    removed_on_failure,
    require_database,
    run_tool,
    tool_error,
    tools_check,
)
from backupctl_postgres import clients, drill, snapshot

log = logging.getLogger("backupctl.postgres")

TYPE = "postgres"
FORMAT = "postgres-custom"
EXTENSION = ".dump"
# database.jobs > 1: pg_dump --format=directory --jobs: a folder, one file per table.
DIRECTORY_FORMAT = "postgres-directory"
DIRECTORY_EXTENSION = ".dir"
DEFAULT_PORT = 5432
CONNECT_TIMEOUT_SECONDS = 10
SECONDS_PER_MINUTE = 60  # dump_timeout_minutes' unit (a test shortens it)

INSTALL_HINT = clients.INSTALL_HINT

# pg_dump's refusal, e.g. "pg_dump: detail: server version: 16.2 (Debian 16.2-1);
# pg_dump version: 15.6 (Debian 15.6-0+deb12u1)" (PostgreSQL 14 and older: "error:").
MISMATCH = re.compile(r"server version: ([^;\n]+); pg_dump version: ([^\n]+)")

# ``pg_restore --list`` entry kinds that carry a data block in the archive.
DATA_ENTRY_KINDS = (b" TABLE DATA ", b" BLOBS ")

# Substrings of libpq/pg_dump errors. Checked in this order: an authentication
# failure also says "connection to server ... failed", and it must not be retried.
PERMANENT_ERRORS = (
    "authentication failed",  # "password authentication failed for user ..."
    "no password supplied",
    "fatal: database",  # database "x" does not exist
    "fatal: role",  # role "x" does not exist
    "permission denied",
    "no pg_hba.conf entry",
    "server version mismatch",
)
CONNECTIVITY_ERRORS = (
    "connection refused",
    "could not connect",
    "could not translate host name",
    "timeout expired",
    "no route to host",
    "network is unreachable",
    "server closed the connection unexpectedly",
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
    problems = missing_keys(db, ("host", "name", "user")) + port_problems(db)
    if db.pg_dump_path and not clients.is_executable(Path(db.pg_dump_path)):
        problems.append(f"database.pg_dump_path: {db.pg_dump_path} is not an executable file")
    return problems


@hookimpl
def backupctl_dump(
    project: ProjectSettings, settings: GlobalSettings, target_stem: Path
) -> DumpArtifact:
    db = require_database(project, TYPE)
    jobs = db.jobs or 1
    parallel = jobs > 1
    path = target_stem.with_name(
        target_stem.name + (DIRECTORY_EXTENSION if parallel else EXTENSION)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # The manifest's row counts: the server counts them in the snapshot pg_dump dumps.
    session = snapshot.SnapshotSession.open(
        [clients.direct("psql"), *_connection_args(db)], _environment(db)
    )
    pg_dump = clients.pg_dump_tool(db, session.server_major if session else None)
    if parallel:  # pg_dump fills an empty folder; its files are ours alone inside it
        path.mkdir(mode=0o700)
        path.chmod(0o700)
        argv = [pg_dump, "--format=directory", f"--jobs={jobs}"]
    else:
        create_private_file(path)  # pg_dump --file truncates it and keeps the mode
        argv = [pg_dump, "--format=custom"]
    argv += [f"--file={path}", *_connection_args(db)]
    if not project.compression.enabled:
        argv.insert(2, "--compress=0")  # restic deduplicates and compresses it instead
    if session is not None:
        argv.append(f"--snapshot={session.snapshot}")
    drill.read_during_dump(path, db, session.readings if session else None)
    with removed_on_failure(path):
        try:
            _dump(argv, db)
        except BaseException:
            drill.forget_during_dump(path)
            raise
        finally:
            if session is not None:
                session.close()
    if parallel:
        return DumpArtifact(path=path, size_bytes=_private_tree(path), format=DIRECTORY_FORMAT)
    return DumpArtifact(path=path, size_bytes=path.stat().st_size, format=FORMAT)


def _private_tree(folder: Path) -> int:
    """Make a directory dump's files 0600 (pg_dump follows the umask); their bytes."""
    size = 0
    for file in folder.iterdir():
        file.chmod(0o600)
        size += file.stat().st_size
    return size


def _dump(argv: list[str], db: DatabaseSettings) -> None:
    """``pg_dump``; when it is too old for the server, once more with an installed
    pg_dump that fits."""
    result = _run(argv, db, limit_minutes=db.dump_timeout_minutes)
    mismatch = MISMATCH.search(result.stderr) if result.returncode != 0 else None
    if mismatch:
        server, client = mismatch[1].strip(), mismatch[2].strip()
        newer = None if db.pg_dump_path else clients.fitting_pg_dump(clients.major(server))
        if newer is None:
            raise PluginError(_mismatch_message(db, server, client), retryable=False)
        log.info("pg_dump %s is older than the server (%s): using %s", client, server, newer)
        argv[0] = str(newer)
        result = _run(argv, db, limit_minutes=db.dump_timeout_minutes)
    if result.returncode != 0:
        raise _error("pg_dump", result, db)


@hookimpl
def backupctl_verify(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> VerifyResult:
    path = Path(artifact.path)
    if not (path.is_dir() if artifact.format == DIRECTORY_FORMAT else path.is_file()):
        return VerifyResult(False, f"dump file missing: {path}")
    # 1. The table of contents, streamed line by line: count the entries.
    entries = 0
    last_data_entry: bytes | None = None
    data_entry_ids: list[str] = []
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.Popen(
                [clients.pg_restore_tool(project.database), "--list", str(path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env=child_env(),
            )
        except FileNotFoundError:
            return VerifyResult(False, f"pg_restore not found on PATH ({INSTALL_HINT})")
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() and not line.startswith(b";"):
                entries += 1
                if any(kind in line for kind in DATA_ENTRY_KINDS):
                    last_data_entry = line
                    if b" TABLE DATA " in line:
                        data_entry_ids.append(line.split(b";", 1)[0].decode())
        returncode = proc.wait()
        errors = read_captured(stderr)
    if returncode != 0:
        return VerifyResult(False, _first_error_line(errors) or f"pg_restore exited {returncode}")
    if path.is_dir():  # a file per data entry, named by its dump id: 3342.dat.gz
        present = {name.split(".", 1)[0] for name in os.listdir(path)}
        missing = [n for n in data_entry_ids if n not in present]
        if missing:
            return VerifyResult(False, f"data files missing from {path.name}: {missing[:5]}")
    # 2. The last data block, which ends the file: a truncated dump cannot restore it.
    if last_data_entry is not None:
        problem = _restore_entry_to_null(project.database, path, last_data_entry)
        if problem:
            return VerifyResult(False, problem)
    return VerifyResult(True, f"{entries} entries")


@hookimpl
def backupctl_manifest(
    project: ProjectSettings, settings: GlobalSettings, artifact: DumpArtifact
) -> DumpManifest | None:
    """Tables and exact row counts, read from the dump itself (see drill.py)."""
    db = database_of(project, TYPE)
    if db is None or artifact.format not in (FORMAT, DIRECTORY_FORMAT):
        return None
    return drill.dump_manifest(Path(artifact.path), db, artifact.size_bytes)


@hookimpl
def backupctl_scratch_database(
    project: ProjectSettings, settings: GlobalSettings, name: str
) -> drill.PostgresScratchDatabase | None:
    db = database_of(project, TYPE)
    return drill.PostgresScratchDatabase(project, db, name) if db is not None else None


@hookimpl
def backupctl_check(project: ProjectSettings, settings: GlobalSettings) -> list[CheckResult]:
    db = database_of(project, TYPE)
    if db is None:
        return []
    used = [clients.pg_dump_tool(db, None), clients.pg_restore_tool(db), clients.direct("psql")]
    tools = tools_check(used, INSTALL_HINT)  # the programs the run starts, past pg_wrapper
    if tools.status == "fail":
        return [tools]
    login, server = _login_check(db)
    version = _pg_dump_check(db, server) if server else None
    return [tools, login] if version is None else [tools, login, version]


def _login_check(db: DatabaseSettings) -> tuple[CheckResult, str]:
    """The login's result and the server's version ("" when the login failed)."""
    where = f"{db.user}@{db.host}:{db.port or DEFAULT_PORT}/{db.name}"
    argv = [clients.direct("psql"), "--no-psqlrc", "--quiet", "--tuples-only", "--no-align"]
    try:
        result = _run(
            [*argv, "--command=SHOW server_version", *_connection_args(db)],
            db,
            timeout=3 * CONNECT_TIMEOUT_SECONDS,
        )
    except PluginError as exc:
        return failed_database_check(exc), ""
    if result.returncode != 0:
        return failed_database_check(_error("psql", result, db)), ""
    server = result.stdout.strip()
    detail = f"postgres {where} reachable, login ok" + (f", server {server}" if server else "")
    return CheckResult("database", "pass", detail), server


def _pg_dump_check(db: DatabaseSettings, server: str) -> CheckResult | None:
    """None when the first pg_dump fits the server (as the dump then goes), else which
    installed pg_dump the dump will switch to, or the failure the dump would end in."""
    server_major = clients.major(server)
    chosen = clients.pg_dump_tool(db, server_major)  # as the dump chooses it
    first = shutil.which(chosen) or chosen
    client = clients.version_of(first)
    if not client or server_major is None or (clients.major(client) or 0) >= server_major:
        return None
    newer = None if db.pg_dump_path else clients.fitting_pg_dump(server_major)
    if newer is None:
        return CheckResult("pg_dump version", "fail", _mismatch_message(db, server, client))
    detail = f"{newer} for server {server} (pg_dump on PATH is {client}, too old)"
    return CheckResult("pg_dump version", "pass", detail)


@hookimpl
def backupctl_decompress(
    project: ProjectSettings, settings: GlobalSettings, path: Path
) -> Path | None:
    """``x.dump`` → ``x.sql`` next to it: plain SQL from ``pg_restore --file``; else None.

    ``--no-owner``, like the guide's pg_restore: the SQL imports as any user.
    """
    if path.suffix not in (EXTENSION, DIRECTORY_EXTENSION):
        return None
    plain = path.with_suffix(".sql")
    create_private_file(plain)  # pg_restore --file truncates it and keeps the mode
    with removed_on_failure(plain):
        problem = _pg_restore(project.database, ["--no-owner", f"--file={plain}", str(path)])
        if problem:
            raise PluginError(problem, retryable=False)
    return plain


@hookimpl
def backupctl_restore_guide(
    project: ProjectSettings, settings: GlobalSettings, dump_file: Path, snapshot_id: str
) -> list[str]:
    """createdb with the database's own encoding and locale, pg_restore (or psql for
    the plain SQL) stopping at the first error, then its comment and settings; the
    tools ask for the password. The target is named after the snapshot."""
    db = require_database(project, TYPE)
    new = f"{db.name}_restored_{snapshot_id[:8]}"
    login = [f"--host={db.host}", f"--port={db.port or DEFAULT_PORT}", f"--username={db.user}"]
    if dump_file.suffix in (EXTENSION, DIRECTORY_EXTENSION):
        restore = ["pg_restore", *login, f"--dbname={new}", "--no-owner", "--exit-on-error"]
        if dump_file.suffix == DIRECTORY_EXTENSION:  # a table per job, as it was dumped
            restore.append(f"--jobs={db.jobs or 2}")
        restore.append(str(dump_file))
    elif dump_file.suffix == ".sql":
        restore = ["psql", *login, f"--dbname={new}", "--set=ON_ERROR_STOP=1", "--quiet"]
        restore.append(f"--file={dump_file}")
    else:
        return []
    manifest = manifest_beside(dump_file)
    options = dict(manifest.database_options) if manifest else {}
    roles = dict(options.get("roles_sql") or {})
    if roles:  # owners and grants come back: pg_restore sets them (as a superuser)
        restore.remove("--no-owner")
    createdb = ["createdb", *login]
    if options.get("encoding"):  # template0: the only template another locale may use
        createdb += [
            "--template=template0",
            f"--encoding={options['encoding']}",
            f"--lc-collate={options['lc_collate']}",
            f"--lc-ctype={options['lc_ctype']}",
        ]
    guide = [
        f"# Import into a new database {new} (any name will do); the tools ask for the "
        "password. createdb needs a role with CREATEDB; a database that exists stops it, "
        "and pg_restore stops at its first error.",
    ]
    if roles:
        guide.append(
            f"# The dump's roles first ({', '.join(sorted(roles))}): only those missing are "
            "created, none is changed, no password is set. Run the guide as a superuser "
            f"(--username): pg_restore gives every object its owner and grants back."
        )
        create_roles = (
            "DO $$ BEGIN "
            + " ".join(
                f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(name)}) THEN"
                f" {statement}; END IF;"
                for name, statement in sorted(roles.items())
            )
            + " END $$;"
        )
        psql = ["psql", *login, "--dbname=postgres", "--set=ON_ERROR_STOP=1", "--quiet"]
        guide.append(shlex.join([*psql, f"--command={create_roles}"]))
    guide += [
        shlex.join([*createdb, new]),
        shlex.join(restore),
    ]
    properties = database_properties_sql(new, options)
    if properties:
        psql = ["psql", *login, f"--dbname={new}", "--set=ON_ERROR_STOP=1", "--quiet"]
        guide.append(shlex.join([*psql, f"--command={properties}"]))
    guide += _guide_notes(db, new, options, manifest is not None)
    return guide


# ``ALTER DATABASE … SET`` values that are lists of separately quoted items.
LIST_SETTINGS = frozenset({"search_path", "temp_tablespaces", "session_preload_libraries",
                           "local_preload_libraries", "shared_preload_libraries"})  # fmt: skip
SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unquoted(identifier: str) -> str:
    if len(identifier) >= 2 and identifier[0] == identifier[-1] == '"':
        return identifier[1:-1].replace('""', '"')
    return identifier


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_properties_sql(database: str, options: dict[str, Any]) -> str:
    """``COMMENT ON DATABASE`` and ``ALTER DATABASE … SET`` for the restored copy."""
    statements = []
    if options.get("comment"):
        statements.append(
            f"COMMENT ON DATABASE {_identifier(database)} IS {_literal(options['comment'])}"
        )
    for item in options.get("settings") or []:
        name, _, value = str(item).partition("=")
        if not SETTING_NAME.fullmatch(name):
            continue
        if name in LIST_SETTINGS:
            # Stored as identifiers ('"$user", public'): each becomes a literal, as
            # pg_dump writes them ('$user', 'public').
            quoted = ", ".join(_literal(_unquoted(part.strip())) for part in value.split(","))
        else:
            quoted = _literal(value)
        statements.append(f"ALTER DATABASE {_identifier(database)} SET {name} TO {quoted}")
    return "; ".join(statements) + ";" if statements else ""


def _guide_notes(
    db: DatabaseSettings, new: str, options: dict[str, Any], has_manifest: bool
) -> list[str]:
    """What the import cannot bring back, said where the operator reads the commands."""
    if not has_manifest:
        return [
            "# No manifest beside the dump: the new database gets the server's default "
            "encoding and locale, and no comment or ALTER DATABASE settings."
        ]
    notes = []
    others = sorted(set(options.get("roles") or []) - {db.user or ""})
    if others and not options.get("roles_sql"):
        notes.append(
            f"# Objects in the dump were owned by role(s) {', '.join(others)}: roles are in "
            f"no dump; with --no-owner {new} and everything in it belong to the importing "
            "user, and grants to roles missing here fail the import. database.include_roles "
            "keeps the roles with the next backups."
        )
    for role, items in sorted((options.get("role_settings") or {}).items()):
        for item in items:
            name, _, value = str(item).partition("=")
            notes.append(
                f"# As a superuser, if wanted: ALTER ROLE {_identifier(role)} IN DATABASE "
                f"{_identifier(new)} SET {name} TO {_literal(value)};"
            )
    return notes


# -- helpers -------------------------------------------------------------------


def _restore_entry_to_null(db: DatabaseSettings | None, dump: Path, list_line: bytes) -> str:
    """Restore one ``--list`` entry into /dev/null; the error line, or "" when it restored."""
    with tempfile.NamedTemporaryFile(suffix=".list") as use_list:
        use_list.write(list_line)
        use_list.flush()
        return _pg_restore(db, [f"--use-list={use_list.name}", "--file=/dev/null", str(dump)])


def _pg_restore(db: DatabaseSettings | None, args: list[str]) -> str:
    """``pg_restore ARGS`` on local files (no server): its error line, or "" when it worked."""
    result = run_tool([clients.pg_restore_tool(db), *args], install_hint=INSTALL_HINT)
    if result.returncode == 0:
        return ""
    return _first_error_line(result.stderr) or f"pg_restore exited {result.returncode}"


# -- which client tools -----------------------------------------------------------


def _mismatch_message(db: DatabaseSettings, server: str, client: str) -> str:
    """Both versions and the fix, for a pg_dump older than the server."""
    server_major = clients.major(server)
    where = f"{db.host}:{db.port or DEFAULT_PORT}"
    if db.pg_dump_path:
        return (
            f"database.pg_dump_path {db.pg_dump_path} is pg_dump {client}, older than the "
            f"PostgreSQL {server} server at {where}: point it at a pg_dump {server_major} or "
            "newer, or remove it to choose from PATH and /usr/lib/postgresql/*/bin"
        )
    return (
        f"pg_dump {client} is older than the PostgreSQL {server} server at {where}, and no "
        f"pg_dump {server_major} or newer is installed (PATH, /usr/lib/postgresql/*/bin): "
        f"install postgresql-client-{server_major} (apt.postgresql.org) or set "
        "database.pg_dump_path to such a pg_dump"
    )


def _connection_args(db: DatabaseSettings) -> list[str]:
    """Where to connect — everything except the password, which goes in the environment."""
    return [
        f"--host={db.host}",
        f"--port={db.port or DEFAULT_PORT}",
        f"--username={db.user}",
        f"--dbname={db.name}",
        "--no-password",  # never prompt: fail if the environment has no password
    ]


def _environment(db: DatabaseSettings) -> dict[str, str]:
    """The base environment, libpq's own settings (``PG*``, never a password), a
    connect timeout and this database's password: no other secret of ours."""
    own = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS)}
    if db.password is not None:
        own["PGPASSWORD"] = db.password.reveal()
    return child_env(own, prefixes=["PG"])


def _run(
    argv: list[str],
    db: DatabaseSettings,
    *,
    timeout: float | None = None,
    limit_minutes: int | None = None,
) -> ToolResult:
    """Run a PostgreSQL client tool with this database's password in its environment.

    ``timeout``: a connection check that hangs (retryable); ``limit_minutes``: the
    operator's ``dump_timeout_minutes``, after which the tool is killed for good.
    """
    limit = None
    if limit_minutes:
        timeout = limit_minutes * SECONDS_PER_MINUTE
        limit = f"{limit_minutes} min (database.dump_timeout_minutes)"
    return run_tool(
        argv, env=_environment(db), timeout=timeout, limit=limit, install_hint=INSTALL_HINT
    )


def _first_error_line(stderr: str) -> str:
    """The ``pg_dump: error: ...`` or ``FATAL: ...`` line of a tool's stderr, else its first."""
    return first_error_line(stderr, ("error:", "FATAL:"), ignore_case=False)


def _error(tool: str, result: ToolResult, db: DatabaseSettings) -> PluginError:
    """A one-line PluginError without the password, permanent or retryable by its text."""
    return tool_error(
        tool, result, secrets=[db.password], describe=_first_error_line, prefixed=False,
        permanent=PERMANENT_ERRORS, connectivity=CONNECTIVITY_ERRORS,
    )  # fmt: skip
