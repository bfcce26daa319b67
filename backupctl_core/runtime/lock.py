"""The per-project lock: ``{BACKUP_BASE_DIR}/{project}/.lock``.

An exclusive ``flock`` (portalocker) on the file, which also holds the PID and
start time of the holder for the message a colliding run prints. The kernel
drops the lock when its process dies, so a lock left by a crashed run never
blocks a new one. The file is removed on release; a waiter that locked a file
which was removed meanwhile notices (inode check) and tries again.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

import portalocker

from backupctl_core.domain.errors import LockHeldError
from backupctl_core.plugin_kit import make_private_dir


def describe_holder(path: Path) -> str:
    try:
        content = path.read_text().strip()
    except OSError:
        content = ""
    pid, _, since = content.partition(" ")
    if not pid:
        return "another process"
    return f"PID {pid} since {since or 'unknown time'}"


class ProjectLock:
    def __init__(self, project_dir: Path, project: str, *, wait: bool = False) -> None:
        self.path = project_dir / ".lock"
        self.project = project
        self.wait = wait
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        make_private_dir(self.path.parent)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file
            handle = os.fdopen(fd, "a+")
            try:
                flags = portalocker.LOCK_EX | (0 if self.wait else portalocker.LOCK_NB)
                portalocker.lock(handle, flags)
            except portalocker.exceptions.LockException:
                handle.close()
                raise LockHeldError(
                    f"backup of '{self.project}' already in progress"
                    f" ({describe_holder(self.path)}; lock {self.path})"
                ) from None
            if self._same_file(handle):
                break
            handle.close()  # the holder removed it between our open and lock
            time.sleep(0.01)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        handle.flush()
        self._handle = handle

    def _same_file(self, handle: IO[str]) -> bool:
        try:
            return os.fstat(handle.fileno()).st_ino == self.path.stat().st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            portalocker.unlock(self._handle)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class RunLock:
    """A run's locks, taken in order and released in reverse: the local ``.lock``
    file, then (fleet mode) the project's advisory lock in the audit store."""

    def __init__(self, *locks: AbstractContextManager[object]) -> None:
        self.locks = locks
        self._stack: ExitStack | None = None

    def __enter__(self) -> RunLock:
        with ExitStack() as stack:
            for lock in self.locks:
                stack.enter_context(lock)
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def held_by_live_process(path: Path) -> bool:
    """True when the ``.lock`` file ``path`` names a process that is alive (a run,
    from the CLI too); a crashed run's file names a dead one. Reads the file and
    never locks it: probing with a lock could make a run starting now fail."""
    try:
        pid = path.read_text().split()[:1]
    except OSError:
        return False
    if not pid or not pid[0].isdigit():
        return False
    import psutil  # imported here: only the service's /metrics asks

    return bool(psutil.pid_exists(int(pid[0])))


def is_stale(path: Path) -> bool:
    """True when a ``.lock`` file exists but nobody holds it."""
    if not path.exists():
        return False
    with path.open("a+") as handle:
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            return False
        portalocker.unlock(handle)
        return True


class ServiceLock:
    """One ``serve`` per backup folder: ``{BACKUP_BASE_DIR}/.backupctl-serve.lock``,
    an exclusive ``flock`` held for the service's lifetime, holding its PID."""

    def __init__(self, base_dir: Path) -> None:
        self.path = base_dir / ".backupctl-serve.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        make_private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(fd, "r+")
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            handle.close()
            raise LockHeldError(
                f"a backupctl service already runs on {self.path.parent}"
                f" ({describe_holder(self.path)}; lock {self.path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            portalocker.unlock(self._handle)
            self._handle.close()
            self._handle = None

    def holder(self) -> int | None:
        """The PID of the service holding the lock now, or None when no service does."""
        if not self.path.exists():
            return None
        with self.path.open("r") as handle:
            try:
                portalocker.lock(handle, portalocker.LOCK_SH | portalocker.LOCK_NB)
            except portalocker.exceptions.LockException:
                pid = handle.read().split()[:1]
                return int(pid[0]) if pid and pid[0].isdigit() else None
            portalocker.unlock(handle)
            return None  # nobody holds it: a service that ended
