"""The machine's MariaDB server, for tests that need a real MySQL-compatible server.

Unlike PostgreSQL (``pgcluster.py``), the tests use the server the machine runs:
127.0.0.1:3306 for the code under test (password auth over TCP, really checked) and
the unix socket for administration, where OS root logs in as MariaDB ``root`` through
``unix_socket`` auth without a password.

``MariaDb.ensure_running()`` starts the server when it is down, the way Debian runs
it (``mariadbd --user=mysql`` in the background; as root it refuses to start without
``--user``). Each test then gets a database and a user with a real password
(``create_database_with_user``), dropped afterwards.

    server = MariaDb().ensure_running()
    db = server.create_database_with_user()
    server.execute("CREATE TABLE t (id int)", database=db.name, login=db)  # as db.user
    rows = server.query("SELECT count(*) FROM t", database=db.name)   # as root: [("0",)]
    server.drop_database_with_user(db)

Values come back as strings (``None`` for NULL): the admin client is the ``mysql``
command-line tool with ``--xml`` output, so the tests need no Python MySQL driver.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from attrs import frozen

HOST = "127.0.0.1"
PORT = 3306
SOCKET = Path("/run/mysqld/mysqld.sock")
SERVER = Path("/usr/sbin/mariadbd")
DATA_DIR = Path("/var/lib/mysql")
ERROR_LOG = Path("/var/log/mysql/error.log")
_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class MariaDbError(RuntimeError):
    """The server could not be reached, started or administered."""


@frozen
class MysqlDatabase:
    """A database and the user (with a password) allowed everything on ``name*``."""

    host: str
    port: int
    name: str
    user: str
    password: str


def quote_string(value: str) -> str:
    """A SQL string literal (MariaDB's default sql_mode: backslash escapes apply)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_name(name: str) -> str:
    """A SQL identifier in backticks."""
    return "`" + name.replace("`", "``") + "`"


class MariaDb:
    """Administration of the machine's MariaDB as its ``root`` over the unix socket."""

    def __init__(self, host: str = HOST, port: int = PORT, socket: Path = SOCKET) -> None:
        self.host = host
        self.port = port
        self.socket = socket

    # -- lifecycle -----------------------------------------------------------

    def is_running(self) -> bool:
        try:
            self.query("SELECT 1")
        except MariaDbError:
            return False
        return True

    def ensure_running(self, timeout: float = 60) -> MariaDb:
        """Start ``mariadbd`` when it does not answer; wait until it does."""
        if self.is_running():
            return self
        if not SERVER.is_file():
            raise MariaDbError(f"{SERVER} not found: install mariadb-server")
        if not (DATA_DIR / "mysql").is_dir():
            raise MariaDbError(f"{DATA_DIR} holds no system tables: run mariadb-install-db")
        if os.geteuid() != 0:
            raise MariaDbError("MariaDB is not running and only root can start it")
        run_dir = self.socket.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "mysql", "mysql")
        subprocess.run(
            [
                "start-stop-daemon",
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                str(SERVER),
                "--",
                "--user=mysql",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return self
            time.sleep(0.25)
        log = ERROR_LOG.read_text(errors="replace")[-3000:] if ERROR_LOG.is_file() else ""
        raise MariaDbError(f"mariadbd did not answer within {timeout:g}s\n{log}")

    # -- SQL -----------------------------------------------------------------

    def _client(
        self, sql: str, database: str | None, *extra: str, login: MysqlDatabase | None = None
    ) -> str:
        """Run the ``mysql`` tool: as root over the socket, or as ``login`` over TCP."""
        with tempfile.NamedTemporaryFile("w", prefix="mariadb-test-", suffix=".cnf") as options:
            if login is None:
                connection = [
                    "--no-defaults",  # the machine's or root's option files must not interfere
                    "--protocol=socket",
                    f"--socket={self.socket}",
                    "--user=root",
                ]
            else:  # a 0600 option file (NamedTemporaryFile's mode) keeps the password off argv
                password = login.password.replace("\\", "\\\\").replace('"', '\\"')
                options.write(
                    f"[client]\nhost={login.host}\nport={login.port}\nuser={login.user}\n"
                    f'password="{password}"\n'
                )
                options.flush()
                connection = [f"--defaults-file={options.name}", "--protocol=tcp"]
            argv = [
                "mysql",
                *connection,
                "--default-character-set=utf8mb4",
                *extra,
                f"--execute={sql}",
            ]
            if database is not None:
                argv.append(database)
            try:
                result = subprocess.run(
                    argv, capture_output=True, text=True, check=False, timeout=120
                )
            except FileNotFoundError:
                raise MariaDbError("mysql not found on PATH: install mariadb-client") from None
        if result.returncode != 0:
            raise MariaDbError(f"mysql failed: {result.stderr.strip()}\nSQL: {sql[:500]}")
        return result.stdout

    def execute(
        self, sql: str, database: str | None = None, *, login: MysqlDatabase | None = None
    ) -> None:
        """Run statements (separated by ``;``) as root, or as the user of ``login``."""
        self._client(sql, database, login=login)

    def query(
        self, sql: str, database: str | None = None, *, login: MysqlDatabase | None = None
    ) -> list[tuple[str | None, ...]]:
        """Rows of one query as tuples of strings, ``None`` for NULL."""
        output = self._client(sql, database, "--xml", login=login)
        if not output.strip():
            return []
        root = ET.fromstring(output)
        return [
            tuple(
                None if field.get(_NIL) == "true" else (field.text or "")
                for field in row.iter("field")
            )
            for row in root.iter("row")
        ]

    # -- per-test databases --------------------------------------------------

    def create_database_with_user(self, password: str | None = None) -> MysqlDatabase:
        """A fresh database ``bk_<hex>`` and user ``bk_<hex>``@``%`` with a password.

        The user may do everything on databases named ``bk_<hex>*`` (so it can also
        create ``bk_<hex>_restored``) and nothing else.
        """
        suffix = secrets.token_hex(4)
        db = MysqlDatabase(
            host=self.host,
            port=self.port,
            name=f"bk_{suffix}",
            user=f"bk_{suffix}",
            password=password or f"pw-{secrets.token_hex(8)}",
        )
        account = f"{quote_string(db.user)}@'%'"
        self.execute(
            f"CREATE USER {account} IDENTIFIED BY {quote_string(db.password)};"
            f"GRANT ALL PRIVILEGES ON `bk\\_{suffix}%`.* TO {account};"
            f"CREATE DATABASE {quote_name(db.name)} CHARACTER SET utf8mb4"
        )
        return db

    def drop_database_with_user(self, db: MysqlDatabase) -> None:
        """Drop the user and every database whose name starts with ``db.name``."""
        pattern = db.name.replace("_", "\\_") + "%"
        names = self.query(
            "SELECT schema_name FROM information_schema.schemata "
            f"WHERE schema_name LIKE {quote_string(pattern)}"
        )
        drops = [f"DROP DATABASE IF EXISTS {quote_name(str(name))}" for (name,) in names]
        self.execute(";".join([*drops, f"DROP USER IF EXISTS {quote_string(db.user)}@'%'"]))
