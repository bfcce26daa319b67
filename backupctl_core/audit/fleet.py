"""Fleet coordination on the PostgreSQL audit store: several hosts, one audit store.

Nothing home-made beyond PostgreSQL:

- **A run's lock** is a session-level advisory lock held on a connection of its own
  for the whole run (besides the local ``.lock`` file). When the process dies, its
  connection closes and PostgreSQL frees the lock: a ``started`` row whose lock is
  free belongs to a dead run, on whatever host.
- **A scheduled job fires once per tick across the fleet**: the replica that inserts
  the row ``(job, tick)`` into ``fleet_claim`` (its primary key) runs it; the others
  see the conflict and skip that tick for good.
- **Replicas** upsert their row in ``fleet_replica`` as they tick (the heartbeat
  ``health`` reads).

Advisory lock keys are the first 8 bytes of ``sha256("backupctl:<kind>:<name>")`` as
a signed 64-bit integer, kind ``project`` for a run (see docs/fleet.md). The holder's
host, pid and start time travel in the lock connection's ``application_name``
("backupctl <host> <pid> <epoch seconds>", at most 63 bytes), so
"in progress on <host>" always names the process that holds the lock.

With SQLite (one host) nothing here is used: ``Fleet.open`` returns ``None``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import suppress
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from attrs import frozen

from backupctl_core.domain.errors import ConnectivityError, LockHeldError
from backupctl_core.domain.settings import AuditDbSettings

log = logging.getLogger("backupctl.fleet")
APP_PREFIX = "backupctl"
_HOLDER = re.compile(r"^backupctl (?P<host>\S+) (?P<pid>\d+) (?P<since>\d+)$")


def advisory_key(kind: str, name: str) -> int:
    """The advisory lock key of ``name`` (a project): stable across hosts and versions."""
    digest = hashlib.sha256(f"backupctl:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@frozen
class Origin:
    """Who runs: this replica's host name (``BACKUPCTL_HOSTNAME``) and process id."""

    hostname: str
    pid: int


@frozen
class Holder:
    hostname: str
    pid: int
    since: str

    def describe(self) -> str:
        return f"on {self.hostname} (pid {self.pid}, since {self.since})"


class FleetLockHeld(LockHeldError):
    """The project's run holds its advisory lock on another process (host)."""


def _connect(settings: AuditDbSettings, application_name: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(
            host=settings.host,
            port=settings.port,
            dbname=settings.name,
            user=settings.user,
            password=settings.password.reveal() if settings.password else None,
            connect_timeout=10,
            application_name=application_name[:63],  # PostgreSQL's NAMEDATALEN - 1
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "unreachable"
        raise ConnectivityError(
            f"audit database {settings.user}@{settings.host}:{settings.port}/{settings.name}:"
            f" {detail}"
        ) from None


class Fleet:
    """This replica's view of the fleet (PostgreSQL audit store only)."""

    def __init__(self, settings: AuditDbSettings, origin: Origin) -> None:
        self.settings = settings
        self.origin = origin

    @classmethod
    def open(cls, settings: AuditDbSettings, origin: Origin) -> Fleet | None:
        return cls(settings, origin) if settings.host else None

    def run_lock(self, project: str) -> AdvisoryLock:
        return AdvisoryLock(self, project)

    def holder(self, project: str, connection: Any | None = None) -> Holder | None:
        """Who holds ``project``'s lock now (None when nobody does)."""
        key = advisory_key("project", project)
        query = (
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = %s AND l.objid = %s"
        )
        classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        own = connection is None
        conn = connection or _connect(self.settings, f"{APP_PREFIX} probe")
        try:
            row = conn.execute(query, (classid, objid)).fetchone()
        finally:
            if own:
                conn.close()
        if row is None:
            return None
        match = _HOLDER.match(row[0] or "")
        if match is None:
            return Holder("another host", 0, "unknown time")
        since = datetime.fromtimestamp(int(match["since"]), UTC)
        return Holder(match["host"], int(match["pid"]), since.isoformat(timespec="seconds"))

    def is_held(self, project: str) -> bool:
        """True while some process holds ``project``'s run lock (its run is alive)."""
        return self.holder(project) is not None


class AdvisoryLock:
    """The run lock of one project across the fleet, for ``with``."""

    def __init__(self, fleet: Fleet, project: str) -> None:
        self.fleet = fleet
        self.project = project
        self.key = advisory_key("project", project)
        self._conn: Any | None = None

    def acquire(self) -> bool:
        """Take the lock; raise ``FleetLockHeld`` naming the holder when another has it.

        False when the audit store is unreachable: the run goes on under the local
        lock alone (its row goes to the fallback file anyway), as documented.
        """
        origin = self.fleet.origin
        name = f"{APP_PREFIX} {origin.hostname} {origin.pid} {int(time.time())}"
        try:
            conn = _connect(self.fleet.settings, name)
        except ConnectivityError as error:
            log.warning("%s: %s; fleet lock skipped, the local lock alone", self.project, error)
            return False
        (got,) = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not got:
            try:
                holder = self.fleet.holder(self.project, conn)
            finally:
                conn.close()
            where = holder.describe() if holder else "on another host"
            raise FleetLockHeld(f"backup of '{self.project}' already in progress {where}")
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is None:
            return
        with suppress(Exception):  # closing the session frees the lock either way
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        with suppress(Exception):
            self._conn.close()
        self._conn = None

    def __enter__(self) -> AdvisoryLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
