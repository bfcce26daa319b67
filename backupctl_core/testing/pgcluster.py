"""A throwaway PostgreSQL cluster that really checks passwords.

The machine's own cluster may trust every login, which hides password bugs.
``PgCluster`` runs ``initdb --auth=scram-sha-256`` into a fresh temp dir, starts
the server with ``pg_ctl`` on a free port on 127.0.0.1 (its unix socket in a
temp dir of its own) and stops it with ``pg_ctl stop -m fast``.

When the tests run as root the server binaries run as the ``postgres`` user
(``runuser -u postgres --``), because ``initdb`` and ``postgres`` refuse root.

    with PgCluster() as pg:
        pg.create_role("app", "s3cret")
        pg.create_database("appdb", owner="app")
        pg.execute("appdb", "create table t (id int)")
        rows = pg.query("appdb", "select count(*) from t")

Missing binaries are an error (``PgClusterError``), never a skip. Set
``BACKUPCTL_PG_BINDIR`` to use server binaries from another directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "scram-superuser-pw"
HOST = "127.0.0.1"
_RUN_AS = "postgres"  # the OS user that owns the data dir when we are root


class PgClusterError(RuntimeError):
    """The test cluster could not be created, started or stopped."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres (newest version first)."""
    override = os.environ.get("BACKUPCTL_PG_BINDIR")
    candidates: list[Path] = [Path(override)] if override else []
    if not override:
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates += versions
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return bindir
    looked = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, PATH"
    raise PgClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in "
        f"{looked}. Install postgresql (Debian: apt-get install postgresql) or set "
        "BACKUPCTL_PG_BINDIR."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A private PostgreSQL cluster with scram-sha-256 password auth on TCP and socket."""

    def __init__(self, bindir: Path | None = None, base_dir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.host = HOST
        self.port = 0
        self.superuser = SUPERUSER
        self.superuser_password = SUPERUSER_PASSWORD
        self._as_root = os.geteuid() == 0
        self._parent = base_dir
        self.base: Path | None = None
        self._running = False

    # -- paths ---------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base / "socket"

    @property
    def log_file(self) -> Path:
        return self._base / "server.log"

    @property
    def _base(self) -> Path:
        if self.base is None:
            raise PgClusterError("cluster not started")
        return self.base

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> PgCluster:
        """initdb into a fresh temp dir, start the server and wait until it answers."""
        self.base = Path(tempfile.mkdtemp(prefix="backupctl-pg-", dir=self._parent))
        try:
            self._initdb()
            self._start_server()
        except BaseException:
            self._cleanup_files()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files."""
        if self.base is None:
            return
        try:
            if self._running:
                result = self._run_as_owner(
                    ["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
                    check=False,
                )
                if result.returncode != 0:
                    self._run_as_owner(
                        ["pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                        check=False,
                    )
                self._running = False
        finally:
            self._cleanup_files()

    def pause(self) -> None:
        """Stop the server but keep its data (fault injection); ``resume()`` restarts it."""
        self._run_as_owner(["pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])
        self._running = False

    def resume(self) -> None:
        """Start a paused server again, on the same port."""
        self._run_as_owner(
            ["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
             "-o", f"-p {self.port}", "-w", "-t", "60", "start"]
        )  # fmt: skip
        self._running = True
        self.query("postgres", "select 1")

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _initdb(self) -> None:
        base = self._base
        self.socket_dir.mkdir(mode=0o700)
        pwfile = base / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if self._as_root:
            owner = pwd.getpwnam(_RUN_AS)
            for path in (base, self.socket_dir, pwfile):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run_as_owner(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ]
        )
        pwfile.unlink()
        settings = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "password_encryption": "'scram-sha-256'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# backupctl test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _start_server(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            result = self._run_as_owner(
                [
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-o",
                    f"-p {self.port}",
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                check=False,
            )
            if result.returncode == 0:
                self._running = True
                self.query("postgres", "select 1")  # ready for password logins
                return
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            port_taken = "Address already in use" in log
            if not port_taken or attempt == attempts - 1:
                raise PgClusterError(
                    f"pg_ctl start failed (exit {result.returncode}):\n{result.stdout}"
                    f"{result.stderr}\n--- {self.log_file} ---\n{log[-3000:]}"
                )

    def _cleanup_files(self) -> None:
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def _run_as_owner(
        self, argv: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the data dir's owner, with a clean PG* environment."""
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", _RUN_AS, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        result = subprocess.run(
            cmd,
            cwd=self._base,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise PgClusterError(
                f"{' '.join(cmd)} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    # -- SQL helpers ---------------------------------------------------------

    def dsn(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """A libpq connection string; the superuser and its password by default."""
        if user is None:
            user = self.superuser
            password = self.superuser_password if password is None else password
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": dbname,
            "user": user,
            "connect_timeout": 10,
        }
        if password is not None:
            params["password"] = password
        return make_conninfo(**params)

    def connect(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection (superuser unless ``user`` is given)."""
        return psycopg.connect(self.dsn(dbname, user, password), autocommit=True)

    def execute(
        self,
        dbname: str,
        statement: str | sql.Composable,
        params: Sequence[Any] | None = None,
    ) -> None:
        """Run one statement as the superuser (autocommit)."""
        with self.connect(dbname) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def query(
        self,
        dbname: str,
        statement: str | sql.Composable,
        params: Sequence[Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one query as the superuser and return all rows."""
        with self.connect(dbname) as conn:
            return conn.execute(statement, params).fetchall()  # type: ignore[arg-type]

    def create_role(self, name: str, password: str | None = None, *, login: bool = True) -> None:
        """CREATE ROLE with LOGIN and a scram-sha-256 password."""
        stmt = sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")
        )
        if password is not None:
            stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(password))
        self.execute("postgres", stmt)

    def create_database(self, name: str, owner: str | None = None) -> None:
        """CREATE DATABASE, owned by ``owner`` (the superuser if None)."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        self.execute("postgres", stmt)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, closing other sessions first."""
        self.execute(
            "postgres",
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )

    def drop_role(self, name: str) -> None:
        """DROP ROLE IF EXISTS (drop the databases it owns first)."""
        self.execute("postgres", sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def tool(self, name: str) -> str:
        """Path of a client binary of the same version (pg_dump, pg_restore, psql)."""
        path = self.bindir / name
        if not path.is_file():
            raise PgClusterError(f"{name} not found in {self.bindir}")
        return str(path)
