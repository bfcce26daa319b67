"""Restore drills for MySQL/MariaDB: the dump's manifest and a scratch database.

* manifest — tables and exact row counts read from the dump itself: every
  ``CREATE TABLE`` line names a table, every ``INSERT INTO `t` VALUES (…),(…);``
  line (mysqldump writes one statement per line, newlines inside values escaped)
  adds its tuples: string literals are blanked out first, then ``),(`` counted.
* scratch database — ``CREATE DATABASE <db>_drill_<ts>``, the dump piped into
  ``mysql`` (no ``--force``: the first error stops it), ``COUNT(*)`` per table,
  the operator's checks in a read-only transaction, ``DROP DATABASE``. The
  credentials travel as the plugin's option file on a pipe, never on argv.
"""

from __future__ import annotations

import gzip
import logging
import re
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any, cast

import attrs

from backupctl_core import DatabaseSettings, DumpManifest, PluginError, ProjectSettings
from backupctl_core.plugin_kit import child_env, first_error_line, read_captured

log = logging.getLogger("backupctl.mysql")
NAME = rb"`((?:[^`]|``)*)`"
CREATE_TABLE = re.compile(rb"^CREATE TABLE " + NAME, re.MULTILINE)
INSERT = re.compile(rb"^INSERT INTO " + NAME + rb" (?:\([^)]*\) )?VALUES\b", re.MULTILINE)
CHUNK = 1 << 20
HEADER_BYTES = 1024
STRING = re.compile(rb"'(?:[^'\\]|\\.)*'", re.DOTALL)
SERVER_VERSION = re.compile(r"^-- Server version\s+(\S+)", re.MULTILINE)
TOOL_VERSION = re.compile(r"^-- (?:MySQL|MariaDB) dump (.+)$", re.MULTILINE)
BATCH_ESCAPES = {"\\t": "\t", "\\n": "\n", "\\0": "\0", "\\\\": "\\"}


def _open_dump(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def count_insert_rows(stream: IO[bytes]) -> tuple[dict[str, int], str]:
    """``({table: rows}, header)`` of a mysqldump file.

    Read in chunks cut at line ends (mysqldump escapes newlines inside strings, so no
    string spans two lines); string literals are blanked out with one regex per chunk,
    then each row is one ``(`` between ``INSERT INTO `t` VALUES`` and the ``;`` that
    ends the statement, whether it writes all rows on one line or one per line
    (MariaDB 10.11+)."""
    counts: dict[str, int] = {}
    table: str | None = None
    header = b""
    rest = b""
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        block, rest = data[:cut], data[cut:]
        if len(header) < HEADER_BYTES:
            header += block[:HEADER_BYTES]
        table = _count_block(STRING.sub(b"''", block), counts, table)
    if rest:
        table = _count_block(STRING.sub(b"''", rest + b"\n"), counts, table)
    if table is not None:
        raise PluginError(f"the dump ends inside the rows of table {table}", retryable=False)
    return counts, header.decode("utf-8", "replace")


def _count_block(block: bytes, counts: dict[str, int], table: str | None) -> str | None:
    """Add the rows in ``block`` to ``counts``; the table whose INSERT goes on, or None."""
    for create in CREATE_TABLE.finditer(block):
        counts.setdefault(_name(create.group(1)), 0)
    position = 0
    while True:
        if table is None:
            insert = INSERT.search(block, position)
            if insert is None:
                return None
            table = _name(insert.group(1))
            counts.setdefault(table, 0)
            position = insert.end()
        end = block.find(b";\n", position)
        if end < 0:
            counts[table] += block.count(b"(", position)
            return table
        counts[table] += block.count(b"(", position, end)
        position = end + 2
        table = None


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", "replace")


def dump_manifest(dump: Path, db: DatabaseSettings) -> DumpManifest:
    try:
        with _open_dump(dump) as stream:
            counts, header = count_insert_rows(stream)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise PluginError(f"cannot read the dump {dump.name}: {error}", retryable=False) from None
    server = SERVER_VERSION.search(header)
    tool = TOOL_VERSION.search(header)
    return DumpManifest(
        database_options=database_options(db),
        engine="mysql",
        database=db.name or "",
        tables=counts,
        engine_version=server.group(1) if server else "",
        tool_version=tool.group(1).strip() if tool else "",
        dump_bytes=dump.stat().st_size,
    )


def run_mysql(
    db: DatabaseSettings, args: list[str], stdin: IO[bytes] | int = subprocess.DEVNULL
) -> str:
    """``mysql ARGS`` with the credentials on a pipe; its stdout, PluginError on failure."""
    from backupctl_mysql.plugin import CONNECT_TIMEOUT_SECONDS, _credentials, _error, _start

    argv = ["mysql", f"--connect-timeout={CONNECT_TIMEOUT_SECONDS}", "--batch"]
    with (
        _credentials(db) as credentials,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as errors,
    ):
        proc = _start([*argv, *args], credentials, stdin=stdin, stdout=out, stderr=errors)
        code = proc.wait()
        if code != 0:
            raise _error("mysql", code, read_captured(errors), db)
        out.seek(0)
        return out.read().decode("utf-8", "replace")


def database_options(db: DatabaseSettings) -> dict[str, Any]:
    """The database's default character set, collation and (MariaDB 10.5+) comment,
    which a dump without ``--databases`` does not hold; an error leaves them out."""
    where = "FROM information_schema.schemata WHERE schema_name = DATABASE()"
    query = ["--skip-column-names", "--raw", str(db.name)]
    try:
        row = run_mysql(db, [*query[:2], f"--execute=SELECT default_character_set_name,"
                             f" default_collation_name {where}", query[2]])  # fmt: skip
        charset, collation = row.rstrip("\n").split("\t")
    except (PluginError, ValueError) as error:
        log.warning("database settings of %s not recorded: %s", db.name, error)
        return {}
    options: dict[str, Any] = {"charset": charset, "collation": collation}
    try:  # MySQL has no schema comments
        comment = run_mysql(db, [*query[:2], f"--execute=SELECT schema_comment {where}", query[2]])
        options["comment"] = comment.removesuffix("\n")
    except PluginError:
        pass
    return options


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MysqlScratchDatabase:
    """A throw-away database on the drill server (``domain.drill.ScratchDatabase``)."""

    def __init__(self, project: ProjectSettings, db: DatabaseSettings, name: str) -> None:
        self.name = name
        server = project.drill.database if project.drill and project.drill.database else None
        if server is not None:
            db = attrs.evolve(
                db,
                host=server.host or db.host,
                port=server.port or db.port,
                user=server.user or db.user,
                password=server.password if server.user else db.password,
            )
        self.server = attrs.evolve(db, name=None)
        self.created = False

    def _client(self, args: list[str], stdin: IO[bytes] | int = subprocess.DEVNULL) -> str:
        return run_mysql(self.server, args, stdin)

    def create_and_import(self, dump_file: Path) -> None:
        self._client([f"--execute=CREATE DATABASE {_quote(self.name)} CHARACTER SET utf8mb4"])
        self.created = True
        args = ["--default-character-set=utf8mb4", self.name]
        if not dump_file.name.endswith(".gz"):
            with dump_file.open("rb") as plain:
                self._client(args, stdin=plain)
            return
        with tempfile.TemporaryFile() as errors:
            gunzip = subprocess.Popen(
                ["gzip", "-dc", "--", str(dump_file)],
                stdout=subprocess.PIPE,
                stderr=errors,
                env=child_env(),
            )
            assert gunzip.stdout is not None
            try:
                self._client(args, stdin=gunzip.stdout)
            finally:
                gunzip.stdout.close()
                if gunzip.wait() != 0:
                    problem = first_error_line(read_captured(errors))
                    raise PluginError(f"gunzip {dump_file.name}: {problem}", retryable=False)

    def table_counts(self) -> dict[str, int]:
        listing = self._client(
            [
                "--skip-column-names",
                "--execute=SELECT table_type, table_name FROM information_schema.tables"
                " WHERE table_schema = DATABASE()"
                " AND table_type IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY 2",
                self.name,
            ]
        )
        tables = [
            [_unescape(part) for part in line.split("\t", 1)]
            for line in listing.splitlines()
            if line
        ]
        names = [name for _, name in tables]
        if not names:
            return {}
        # A versioned table's history is in the dump (--dump-history): count it too.
        query = " UNION ALL ".join(
            f"SELECT {index}, COUNT(*) FROM {_quote(name)}"
            + (" FOR SYSTEM_TIME ALL" if kind == "SYSTEM VERSIONED" else "")
            for index, (kind, name) in enumerate(tables)
        )
        counts: dict[str, int] = {}
        for line in self._client(
            ["--skip-column-names", f"--execute={query}", self.name]
        ).splitlines():
            index, count = line.split("\t")
            counts[names[int(index)]] = int(count)
        return counts

    def check(self, query: str) -> bool:
        script = f"START TRANSACTION READ ONLY; {query.rstrip().rstrip(';')}; ROLLBACK;"
        output = self._client(["--skip-column-names", f"--execute={script}", self.name])
        first = output.splitlines()[0].split("\t")[0] if output.strip() else ""
        return first == "1"

    def drop(self) -> None:
        if self.created:
            self._client([f"--execute=DROP DATABASE IF EXISTS {_quote(self.name)}"])
            self.created = False


def _unescape(text: str) -> str:
    return re.sub(r"\\[tn0\\]", lambda m: BATCH_ESCAPES[m.group(0)], text)
