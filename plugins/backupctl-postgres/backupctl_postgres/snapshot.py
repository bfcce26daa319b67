"""Exact row counts without reading the dump back: the server counts them, in the
very snapshot pg_dump dumps, while pg_dump runs; and the database's own settings
for the manifest, read in the same session.

A ``psql`` session (a process start, not a psycopg import on the critical path)
opens a REPEATABLE READ transaction and exports its snapshot; pg_dump runs with
``--snapshot`` and so sees exactly the rows the session sees; the session counts
every table (``count(*) FROM ONLY``, as pg_dump copies each table of an
inheritance tree alone) and keeps its transaction open until pg_dump has exited.
Counting the dump's COPY blocks instead (``drill.count_copy_rows``) decompresses
the whole dump once more after pg_dump: 0.5 s of a 3.7 s run on a 307 MB
database (bench/README.md section 6).

Whatever goes wrong here (psql missing, a table the user may not count, a server
that cannot export snapshots, a table name the listing mangles) costs nothing but
the speed: the manifest then counts the dump, and reads the settings with psycopg
(drill.database_options), as before.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import IO, Any

from attrs import frozen

from backupctl_core.plugin_kit import in_background

log = logging.getLogger("backupctl.postgres")

START_TIMEOUT_SECONDS = 30  # connect (PGCONNECT_TIMEOUT is 10) and export
END_MARKER = "backupctl-counted"
# pg_export_snapshot()'s name (hex groups, e.g. 00000003-0000001B-1), then the
# server's version number.
EXPORTED = re.compile(r"[0-9A-F]+(?:-[0-9A-F]+)+ \d+")


def _hex(expression: str) -> str:
    """Names travel hex-encoded: psql's unaligned output has no escaping."""
    return f"encode(convert_to({expression}, 'UTF8'), 'hex')"


# One row per table pg_dump copies: hex(listing tail "schema name owner"), hex(the
# quoted name the manifest and the drill use), its row count. Extension members
# are left out: pg_dump copies only the rows an extension's config filter selects.
COUNT_TABLES = f"""
SELECT {_hex("n.nspname || ' ' || c.relname || ' ' || pg_get_userbyid(c.relowner)")},
       {_hex("quote_ident(n.nspname) || '.' || quote_ident(c.relname)")},
       (xpath('/row/n/text()', query_to_xml(
           format('SELECT count(*) AS n FROM ONLY %I.%I', n.nspname, c.relname),
           false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence <> 't'
  AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e');
""".replace("\n", " ")

# What only ``pg_dump --create`` would keep (drill.database_options reads the same
# with psycopg): one line of JSON, after a prefix.
OPTIONS_PREFIX = "options "
READ_OPTIONS = f"""
SELECT '{OPTIONS_PREFIX}' || json_build_object(
  'encoding', pg_encoding_to_char(d.encoding), 'lc_collate', d.datcollate,
  'lc_ctype', d.datctype, 'comment', shobj_description(d.oid, 'pg_database'),
  'settings', coalesce((SELECT json_agg(item) FROM pg_db_role_setting s,
                        unnest(s.setconfig) item
                        WHERE s.setdatabase = d.oid AND s.setrole = 0), '[]'),
  'role_settings', coalesce((SELECT json_object_agg(r.rolname, s.setconfig)
                             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                             WHERE s.setdatabase = d.oid), '{{}}'))::text
FROM pg_database d WHERE d.datname = current_database();
""".replace("\n", " ")

# ON_ERROR_STOP stays off and each read runs in a savepoint: an error there must not
# end the transaction, whose end would take the snapshot from a pg_dump still starting.
SCRIPT = f"""BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET row_security = off;
SELECT pg_export_snapshot() || ' ' || current_setting('server_version_num');
SAVEPOINT reading;
{READ_OPTIONS}
ROLLBACK TO SAVEPOINT reading;
SAVEPOINT reading;
{COUNT_TABLES}
ROLLBACK TO SAVEPOINT reading;
SELECT '{END_MARKER}';
"""

# {"schema name owner" as pg_restore --list ends a TABLE DATA line: (quoted name, rows)}
Counts = dict[str, tuple[str, int]]


@frozen
class Readings:
    """What the session read: None where that read failed."""

    options: dict[str, Any] | None
    counts: Counts | None


class SnapshotSession:
    """The psql session whose snapshot pg_dump imports; ``readings`` resolves once
    the session has ended (``close``)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], exported: str, readings: Future[Readings]
    ) -> None:
        self.proc = proc
        self.snapshot, _, version = exported.partition(" ")
        # 150020 -> 15 (PostgreSQL 10 and later: major * 10000 + minor)
        self.server_major = int(version) // 10000 if version.isdigit() else None
        self.readings = readings

    @classmethod
    def open(cls, argv: list[str], env: dict[str, str]) -> SnapshotSession | None:
        """Start psql (``argv``: psql and its connection options) and wait for the
        exported snapshot; None when there is none to share."""
        try:
            proc = subprocess.Popen(
                [*argv, "--no-psqlrc", "--quiet", "--tuples-only", "--no-align"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a failure only means: count the dump
                env=env,
            )
        except OSError as error:
            log.debug("no snapshot session: %s", error)
            return None
        assert proc.stdin is not None and proc.stdout is not None
        snapshot: Future[str] = Future()
        readings = in_background(lambda: _read(proc, snapshot), "postgres snapshot session")
        try:
            proc.stdin.write(SCRIPT.encode())
            proc.stdin.flush()
            exported = snapshot.result(timeout=START_TIMEOUT_SECONDS)
        except (OSError, FutureTimeout, ValueError) as error:
            log.debug("no snapshot session: %s", error or "timed out")
            _stop(proc)
            return None
        return cls(proc, exported, readings)

    def close(self) -> None:
        """End the transaction (pg_dump has exited); the counts stay readable."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"COMMIT;\n")
            self.proc.stdin.close()
        except OSError:
            pass  # psql is gone already: nothing to end


def _read(proc: subprocess.Popen[bytes], snapshot: Future[str]) -> Readings:
    """psql's output: the snapshot's name, the settings, then the counts up to the
    marker; returns once psql has exited (after ``close``), so none is left unreaped."""
    assert proc.stdout is not None
    with proc.stdout:
        try:
            readings = _parse(proc.stdout, snapshot)
        except ValueError as error:  # a line not ours: trust none of it
            log.debug("snapshot session: unexpected output: %s", error)
            if not snapshot.done():
                snapshot.set_exception(error)
            readings = Readings(None, None)
        proc.stdout.read()  # until psql ends: COMMIT, then end of input
    proc.wait()
    return readings


def _parse(stdout: IO[bytes], snapshot: Future[str]) -> Readings:
    first = stdout.readline().decode("utf-8", "replace").strip()
    if not EXPORTED.fullmatch(first):
        snapshot.set_exception(ValueError(f"no snapshot exported: {first!r}"))
        return Readings(None, None)
    snapshot.set_result(first)
    options: dict[str, Any] | None = None
    counts: Counts | None = {}
    for raw in stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line == END_MARKER:
            return Readings(options, counts)
        if line.startswith(OPTIONS_PREFIX):
            options = json.loads(line.removeprefix(OPTIONS_PREFIX))
            continue
        listed, quoted, rows = line.split("|")
        if counts is None or not rows:  # a table the query could not count
            counts = None
            continue
        tail = bytes.fromhex(listed).decode("utf-8", "replace")
        counts[_sanitized(tail)] = (bytes.fromhex(quoted).decode("utf-8", "replace"), int(rows))
    return Readings(options, None)  # psql ended before the marker


def _sanitized(text: str) -> str:
    """As pg_restore --list prints a name: line breaks as spaces."""
    return text.replace("\r", " ").replace("\n", " ")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def table_counts(listing: str, counts: Counts | None) -> dict[str, int] | None:
    """``{quoted table: rows}`` for every TABLE DATA entry of ``listing`` (``pg_restore
    --list``), or None unless the counts cover every one of them."""
    if counts is None:
        return None
    tables: dict[str, int] = {}
    for line in listing.splitlines():
        if line.startswith(";") or " TABLE DATA " not in line:
            continue
        counted = counts.get(line.split(" TABLE DATA ", 1)[1])
        if counted is None:
            log.debug("row counts: %r not counted by the server; counting the dump", line)
            return None
        tables[counted[0]] = counted[1]
    return tables
