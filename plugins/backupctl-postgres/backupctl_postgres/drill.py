"""Restore drills for PostgreSQL: the dump's manifest and a scratch database.

* manifest — the row count of every table: counted by the server in the snapshot
  pg_dump dumped, while it dumped (snapshot.py); else in the dump itself: each
  ``COPY … FROM stdin;`` block of ``pg_restore --data-only --file=-`` holds one
  line per row (COPY's text format escapes newlines inside values). Counted in
  1 MiB chunks with ``bytes.count``, so no row passes through a Python loop.
* scratch database — ``CREATE DATABASE <db>_drill_<ts>`` on the project's server
  (or ``drill.database``), ``pg_restore --exit-on-error --no-owner --no-acl``
  into it, ``count(*)`` per table, the operator's checks in a read-only
  transaction, then ``DROP DATABASE``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from backupctl_core import DatabaseSettings, DumpManifest, PluginError, ProjectSettings
from backupctl_core.plugin_kit import (
    child_env,
    first_error_line,
    in_background,
    mask,
    read_captured,
    run_tool,
)
from backupctl_postgres import clients, snapshot
from backupctl_postgres.clients import INSTALL_HINT

log = logging.getLogger("backupctl.postgres")
CHUNK = 1 << 20
COPY_LINE = re.compile(rb'^COPY ((?:"[^"]*(?:""[^"]*)*"|[^\s"])+) .*FROM stdin;\n', re.MULTILINE)
END_OF_DATA = b"\\.\n"
VERSION_LINE = re.compile(r";\s+Dumped (from database|by pg_dump) version: (\S+)")
CONNECT_TIMEOUT_SECONDS = 10


def count_copy_rows(stream: IO[bytes]) -> dict[str, int]:
    """``{table: rows}`` of the COPY blocks in a plain SQL dump read from ``stream``."""
    counts: dict[str, int] = {}
    table: str | None = None
    buffer = b""
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        buffer += chunk
        position = 0
        while True:
            if table is None:
                match = COPY_LINE.search(buffer, position)
                if match is None:
                    # Keep the unfinished last line: a COPY line may go on in the next chunk.
                    position = max(position, buffer.rfind(b"\n", position) + 1)
                    break
                table = match.group(1).decode("utf-8", "replace")
                counts[table] = 0
                position = match.end()
                continue
            end = _end_of_data(buffer, position)
            if end < 0:  # the block goes on: count the whole lines we have
                last = max(position, buffer.rfind(b"\n", position) + 1)
                counts[table] += buffer.count(b"\n", position, last)
                position = last
                break
            counts[table] += buffer.count(b"\n", position, end)
            position = end + len(END_OF_DATA)
            table = None
        buffer = buffer[position:]
    if table is not None:
        raise PluginError(f"the dump ends inside the data of table {table}", retryable=False)
    return counts


def _end_of_data(buffer: bytes, position: int) -> int:
    """Where ``\\.`` alone on a line starts (``position`` is always a line start)."""
    if buffer.startswith(END_OF_DATA, position):
        return position
    found = buffer.find(b"\n" + END_OF_DATA, position)
    return found + 1 if found >= 0 else -1


# Read while pg_dump runs, by dump file; dump_manifest takes them: the snapshot
# session's settings and row counts (snapshot.py), or, without a session, the
# settings read by psycopg on a thread (an import and a connection, ~0.1 s).
@dataclass
class _DuringDump:
    session: Future[snapshot.Readings] | None
    options: Future[dict[str, Any]] | None


_during_dump: dict[Path, _DuringDump] = {}
_during_dump_lock = threading.Lock()
READINGS_GRACE_SECONDS = 60  # a count still running after pg_dump: count the dump instead


def read_during_dump(
    dump: Path, db: DatabaseSettings, session: Future[snapshot.Readings] | None
) -> None:
    options = None
    if session is None:
        options = in_background(lambda: database_options(db), "postgres database options")
    with _during_dump_lock:
        _during_dump[dump] = _DuringDump(session, options)


def forget_during_dump(dump: Path) -> None:
    """The dump failed: no manifest will take what was read."""
    with _during_dump_lock:
        _during_dump.pop(dump, None)


def dump_manifest(dump: Path, db: DatabaseSettings, dump_bytes: int | None = None) -> DumpManifest:
    pg_restore = clients.pg_restore_tool(db)  # reads what the chosen pg_dump wrote
    listing = _listing(pg_restore, dump)
    versions = {m.group(1): m.group(2) for m in VERSION_LINE.finditer(listing)}
    with _during_dump_lock:
        during = _during_dump.pop(dump, None)
    readings = _session_readings(during.session if during else None)
    if readings.options is not None:
        options = dict(readings.options)
    elif during is not None and during.options is not None:
        options = during.options.result()
    else:
        options = database_options(db)
    if "unreadable" in options:
        log.warning("database settings of %s not recorded: %s", db.name, options["unreadable"])
        options = {}
    options["roles"] = sorted(_owners(listing))
    if db.include_roles:  # asked for: a dump without them fails rather than surprises
        options["roles_sql"] = role_statements(db)
    counts = snapshot.table_counts(listing, readings.counts)
    if counts is None:
        counts = _count_dump_rows(pg_restore, dump)
    return DumpManifest(
        engine="postgres",
        database=db.name or "",
        tables=counts,
        engine_version=versions.get("from database", ""),
        tool_version=versions.get("by pg_dump", ""),
        dump_bytes=dump.stat().st_size if dump_bytes is None else dump_bytes,
        database_options=options,
    )


def _session_readings(session: Future[snapshot.Readings] | None) -> snapshot.Readings:
    if session is None:
        return snapshot.Readings(None, None)
    try:
        return session.result(timeout=READINGS_GRACE_SECONDS)
    except FutureTimeout:
        log.debug("row counts: the server is still counting; counting the dump")
    except Exception as error:  # the session's reader failed: read it all again
        log.debug("snapshot session failed (%s); counting the dump", error)
    return snapshot.Readings(None, None)


def _count_dump_rows(pg_restore: str, dump: Path) -> dict[str, int]:
    """Every COPY block's rows, read from the dump (the whole of it, decompressed)."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [pg_restore, "--data-only", "--file=-", str(dump)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=child_env(),
        )
        assert proc.stdout is not None
        with proc.stdout:
            counts = count_copy_rows(proc.stdout)
        returncode = proc.wait()
        errors = read_captured(stderr)
    if returncode != 0:
        line = first_error_line(errors, ("error:",), ignore_case=False)
        raise PluginError(f"cannot read the dump's data: {line or returncode}", retryable=False)
    return counts


def _listing(pg_restore: str, dump: Path) -> str:
    """``pg_restore --list``: the versions in its header, an owner ending each entry."""
    return run_tool([pg_restore, "--list", str(dump)], install_hint=INSTALL_HINT).stdout


def _owners(listing: str) -> set[str]:
    return {
        line.rsplit(" ", 1)[-1]
        for line in listing.splitlines()
        if line.strip() and not line.startswith(";") and " " in line
    } - {"-"}


ROLE_FLAGS = (  # pg_roles column -> (keyword when true, keyword when false)
    ("rolsuper", "SUPERUSER", "NOSUPERUSER"),
    ("rolinherit", "INHERIT", "NOINHERIT"),
    ("rolcreaterole", "CREATEROLE", "NOCREATEROLE"),
    ("rolcreatedb", "CREATEDB", "NOCREATEDB"),
    ("rolcanlogin", "LOGIN", "NOLOGIN"),
    ("rolreplication", "REPLICATION", "NOREPLICATION"),
    ("rolbypassrls", "BYPASSRLS", "NOBYPASSRLS"),
)
# Every role named in an ACL of the database's own objects (0 is PUBLIC), and every owner.
ROLES_IN_DATABASE = """
WITH ours AS (SELECT oid FROM pg_namespace
              WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema')
SELECT DISTINCT r.rolname, quote_ident(r.rolname), {flags}, r.rolconnlimit
FROM pg_roles r WHERE r.oid IN (
  SELECT (aclexplode(relacl)).grantee FROM pg_class
    WHERE relacl IS NOT NULL AND relnamespace IN (SELECT oid FROM ours)
  UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace
    WHERE nspacl IS NOT NULL AND oid IN (SELECT oid FROM ours)
  UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc
    WHERE proacl IS NOT NULL AND pronamespace IN (SELECT oid FROM ours)
  UNION SELECT relowner FROM pg_class WHERE relnamespace IN (SELECT oid FROM ours)
  UNION SELECT nspowner FROM pg_namespace WHERE oid IN (SELECT oid FROM ours)
  UNION SELECT proowner FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ours)
) AND r.rolname NOT LIKE 'pg\\_%' ORDER BY 1
"""


def role_statements(db: DatabaseSettings) -> dict[str, str]:
    """``{role: CREATE ROLE …}`` for every role owning or granted something in the
    database, from ``pg_roles`` (readable by any user; no password, like
    ``pg_dumpall --no-role-passwords``)."""
    import psycopg

    flags = ", ".join(f"r.{column}" for column, _, _ in ROLE_FLAGS)
    password = db.password.reveal() if db.password else None
    try:
        with psycopg.connect(
            host=db.host, port=db.port or 5432, user=db.user, password=password,
            dbname=db.name, connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as conn:  # fmt: skip
            rows = conn.execute(ROLES_IN_DATABASE.format(flags=flags)).fetchall()
    except psycopg.Error as error:
        raise PluginError(
            f"database.include_roles: cannot read the roles: {_first_line(error, password)}",
            retryable=False,
        ) from None
    statements = {}
    for name, quoted, *values in rows:
        *switches, limit = values
        words = [yes if on else no for (_, yes, no), on in zip(ROLE_FLAGS, switches, strict=True)]
        if limit != -1:
            words.append(f"CONNECTION LIMIT {int(limit)}")
        statements[name] = f"CREATE ROLE {quoted} WITH {' '.join(words)}"
    return statements


def _first_line(error: Exception, password: str | None) -> str:
    text = str(error).strip()
    return mask(text.splitlines()[0] if text else type(error).__name__, [password])


def database_options(db: DatabaseSettings) -> dict[str, Any]:
    """What only ``pg_dump --create`` would keep: encoding, locale, the database's
    comment and its ``ALTER DATABASE … SET`` settings (per role too). Read from the
    server while the dump runs; when that fails, ``{"unreadable": why}``: the
    manifest leaves them out, with a warning."""
    import psycopg

    password = db.password.reveal() if db.password else None
    try:
        with psycopg.connect(
            host=db.host, port=db.port or 5432, user=db.user, password=password,
            dbname=db.name, connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ) as conn:  # fmt: skip
            row = conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype,"
                " shobj_description(oid, 'pg_database')"
                " FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            assert row is not None  # the database we are connected to
            encoding, collate, ctype, comment = row
            settings = conn.execute(
                "SELECT coalesce(r.rolname, ''), s.setconfig FROM pg_db_role_setting s"
                " LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
                " ORDER BY 1"
            ).fetchall()
    except psycopg.Error as error:
        text = mask(str(error).strip().splitlines()[0] if str(error).strip() else "", [password])
        return {"unreadable": text}  # said by dump_manifest: a failed dump says it already
    return {
        "encoding": encoding,
        "lc_collate": collate,
        "lc_ctype": ctype,
        "comment": comment,
        "settings": [item for role, config in settings if not role for item in config],
        "role_settings": {role: list(config) for role, config in settings if role},
    }


class PostgresScratchDatabase:
    """A throw-away database on the drill server (``domain.drill.ScratchDatabase``)."""

    def __init__(self, project: ProjectSettings, db: DatabaseSettings, name: str) -> None:
        self.name = name
        server = project.drill.database if project.drill and project.drill.database else None
        self.host = (server.host if server and server.host else None) or db.host
        self.port = (server.port if server and server.port else None) or db.port or 5432
        self.user = (server.user if server and server.user else None) or db.user
        secret = server.password if server and server.user else db.password
        self.password = secret.reveal() if secret else None
        # Where CREATE/DROP DATABASE connect: the project's database on its own
        # server, the always-present ``postgres`` on a drill server.
        self.maintenance_db = "postgres" if server else (db.name or "postgres")
        self.pg_restore = clients.pg_restore_tool(db)
        self.jobs = max(db.jobs or 2, 2)
        self.created = False

    @contextmanager
    def _connect(self, dbname: str, autocommit: bool = True) -> Iterator[Any]:
        import psycopg  # the core's dependency; only drills connect from Python

        try:
            conn = psycopg.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password,
                dbname=dbname,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                autocommit=autocommit,
            )
        except psycopg.Error as error:
            raise PluginError(self._masked(error), connectivity=True) from None
        try:
            yield conn
        except psycopg.Error as error:
            raise PluginError(self._masked(error), retryable=False) from None
        finally:
            conn.close()

    def _masked(self, error: Exception) -> str:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return mask(text, [self.password])

    def create_and_import(self, dump_file: Path) -> None:
        with self._connect(self.maintenance_db) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True
        argv = [self.pg_restore, "--exit-on-error", "--no-owner", "--no-acl", "--no-password"]
        argv += [f"--host={self.host}", f"--port={self.port}", f"--username={self.user}"]
        if dump_file.is_dir():  # a directory dump: its tables in parallel, as dumped
            argv.append(f"--jobs={self.jobs}")
        argv += [f"--dbname={self.name}", str(dump_file)]
        if dump_file.suffix == ".sql":
            argv = ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--no-password"]
            argv += [f"--host={self.host}", f"--port={self.port}", f"--username={self.user}"]
            argv += [f"--dbname={self.name}", f"--file={dump_file}"]
        own = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS)}
        if self.password is not None:
            own["PGPASSWORD"] = self.password
        env = child_env(own, prefixes=["PG"])
        result = run_tool(argv, env=env, stdout=subprocess.DEVNULL, install_hint=INSTALL_HINT)
        if result.returncode != 0:  # the drill's import failed: no retry makes it pass
            line = first_error_line(result.stderr, ("error:", "ERROR:"), ignore_case=False)
            message = line or f"{argv[0]} exited {result.returncode}"
            raise PluginError(mask(message, [self.password]), retryable=False)

    def table_counts(self) -> dict[str, int]:
        with self._connect(self.name) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.relkind = 'r'"
                    " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                    " AND n.nspname NOT LIKE 'pg_toast%'"
                )
            ]
            return {
                name: int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
                for name in names
            }

    def check(self, query: str) -> bool:
        with self._connect(self.name, autocommit=False) as conn:
            conn.execute("SET TRANSACTION READ ONLY")
            row = conn.execute(query).fetchone()
            conn.rollback()
        return bool(row and row[0] is True)

    def drop(self) -> None:
        if not self.created:
            return
        with self._connect(self.maintenance_db) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.created = False
