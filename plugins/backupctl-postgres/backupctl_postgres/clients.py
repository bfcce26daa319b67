"""Which PostgreSQL client tools to run: several majors may be installed side by side.

pg_dump must be the server's major or newer; pg_restore reads the archives of every
pg_dump up to its own major, so the newest installed one reads them all.

Where PATH's tool is Debian's ``pg_wrapper`` (a Perl script that picks a major and
execs it: 40-60 ms on every call, four or five calls a run), the major's own binary
in ``/usr/lib/postgresql/N/bin`` is run instead, chosen as the wrapper would: the
server's major for pg_dump (the lowest installed at least the server's), the newest
for pg_restore and psql.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
from pathlib import Path

from backupctl_core import DatabaseSettings, PluginError
from backupctl_core.plugin_kit import run_tool

# Where Debian, Ubuntu and apt.postgresql.org install each major's client tools side
# by side (PATH's pg_dump there is pg_wrapper); a test points it at stand-ins.
VERSIONED_BIN_GLOB = "/usr/lib/postgresql/*/bin"
VERSION_TIMEOUT_SECONDS = 10

INSTALL_HINT = "install postgresql-client"


def installed(tool: str) -> list[tuple[int, Path]]:
    """``(major, path)`` of ``tool`` in each ``/usr/lib/postgresql/N/bin``, lowest first."""
    found = []
    for bindir in glob.glob(VERSIONED_BIN_GLOB):
        number = Path(bindir).parent.name
        if number.isdigit() and is_executable(Path(bindir) / tool):
            found.append((int(number), Path(bindir) / tool))
    return sorted(found)


def fitting_pg_dump(server_major: int | None) -> Path | None:
    """The installed pg_dump of the lowest major at least ``server_major``: its archives
    are the ones the most pg_restore versions read."""
    if server_major is None:
        return None
    return next((path for number, path in installed("pg_dump") if number >= server_major), None)


def is_wrapper(tool: str) -> bool:
    """PATH's ``tool`` is Debian's pg_wrapper (a link to it, or the script itself)."""
    on_path = shutil.which(tool)
    return on_path is not None and Path(os.path.realpath(on_path)).name == "pg_wrapper"


def direct(tool: str) -> str:
    """The newest installed major's ``tool`` where PATH's is pg_wrapper, else ``tool``."""
    if is_wrapper(tool):
        side_by_side = installed(tool)
        if side_by_side:
            return str(side_by_side[-1][1])
    return tool


def pg_dump_tool(db: DatabaseSettings, server_major: int | None) -> str:
    """``database.pg_dump_path``; else, past pg_wrapper, the installed pg_dump fitting
    the server (the newest when its major is unknown); else PATH's pg_dump."""
    if db.pg_dump_path:
        return db.pg_dump_path
    if is_wrapper("pg_dump"):
        fitting = fitting_pg_dump(server_major)
        return str(fitting) if fitting is not None else direct("pg_dump")
    return "pg_dump"


def pg_restore_tool(db: DatabaseSettings | None) -> str:
    """pg_restore beside ``database.pg_dump_path``, else the newest of PATH's and the
    installed majors' (a pg_restore reads the archives of every pg_dump up to its own)."""
    if db is not None and db.pg_dump_path:
        beside = Path(db.pg_dump_path).with_name("pg_restore")
        return str(beside) if is_executable(beside) else "pg_restore"
    side_by_side = installed("pg_restore")
    if not side_by_side:
        return "pg_restore"
    newest_major, newest = side_by_side[-1]
    if is_wrapper("pg_restore"):  # it would pick the newest too
        return str(newest)
    on_path = shutil.which("pg_restore")
    path_major = major(version_of(on_path)) if on_path else None
    if path_major is not None and path_major >= newest_major:
        return "pg_restore"
    return str(newest)


def version_of(tool: str) -> str:
    """``16.2`` from ``pg_dump --version`` ("pg_dump (PostgreSQL) 16.2 (Debian …)"), or "".

    Asked once per program file (path and modification time): a run asks it for
    pg_restore several times, ~35 ms each."""
    path = shutil.which(tool)
    if path is None:
        return ""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return ""
    return _version_of(path, stamp)


@functools.lru_cache(maxsize=32)
def _version_of(path: str, _stamp: int) -> str:
    try:
        done = run_tool([path, "--version"], timeout=VERSION_TIMEOUT_SECONDS, install_hint="")
    except PluginError:
        return ""
    found = re.search(r"\(PostgreSQL\) (\S+)", done.stdout) if done.returncode == 0 else None
    return found[1] if found else ""


def major(version: str) -> int | None:
    """16 from "16.2 (Debian …)", 9 from "9.6.24"; None without a number."""
    found = re.match(r"\s*(\d+)", version)
    return int(found[1]) if found else None


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
