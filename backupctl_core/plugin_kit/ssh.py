"""One SSH connection for every call of a storage tool in a backup run (OpenSSH
multiplexing), for plugins whose tool logs in over ssh (restic's SFTP, borg serve).

Each ssh login costs ~0.2 s here (key exchange, authentication; more over a WAN),
and a run starts the tool three times or more (restic: backup, the snapshot
listing, forget, sometimes prune). For the length of a run (the plugin's
``backupctl_run_session`` returns ``shared_connection(...)``) a master connection
opens in the background while the dump runs, its control socket in a private
(0700) folder; the plugin adds ``control_options(socket_of(key))`` to the ssh
command of each call, which then opens its session as a channel of that
connection (``ControlPath``) in ~0.01 s.

Nothing depends on it: ``ControlMaster=auto`` makes an ssh that finds no master
(still connecting, or gone after ``ControlPersist`` idle seconds) connect by
itself and serve the next ones. The master is closed (``ssh -O exit``) and the
folder removed when the run ends; a master orphaned by a killed backupctl exits
on its own after ``ControlPersist`` idle seconds.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from backupctl_core.plugin_kit import child_env

log = logging.getLogger("backupctl.plugin_kit")

IDLE_SECONDS = 300  # ControlPersist: how long an unused master waits for the next call
# A unix socket path holds at most 107 bytes, and ssh first binds "<path>.<16 chars>".
MAX_SOCKET_PATH = 80
SOCKET_NAME = "mux"

_sockets: dict[str, Path] = {}  # key (a project's name) -> control socket of its run
_sockets_lock = threading.Lock()


def control_options(socket: Path) -> list[str]:
    """ssh options to open sessions through the master at ``socket`` (or become it)."""
    return [
        "-o", f"ControlPath={socket}",
        "-o", "ControlMaster=auto",
        "-o", f"ControlPersist={IDLE_SECONDS}",
    ]  # fmt: skip


def socket_of(key: str) -> Path | None:
    """The control socket of the run ``key`` names, while its connection is held."""
    with _sockets_lock:
        return _sockets.get(key)


@contextlib.contextmanager
def shared_connection(key: str, ssh_options: list[str], destination: str) -> Iterator[None]:
    """Hold a master connection to ``destination`` (``user@host``) open while inside,
    findable as ``socket_of(key)``; ``ssh_options``: ``ssh`` and the options the
    tool's own ssh uses (port, key, known hosts), without destination or command."""
    folder = _private_folder()
    socket = folder / SOCKET_NAME
    master_argv = [*ssh_options, *control_options(socket), "-M", "-N", destination]
    try:
        # With ControlPersist the master goes to the background once logged in; this
        # process ends then. Its output: /dev/null (errors show when restic connects).
        master = subprocess.Popen(
            master_argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=child_env(),
        )
    except OSError as error:
        shutil.rmtree(folder, ignore_errors=True)
        log.debug("no shared SSH connection: %s", error)
        yield
        return
    with _sockets_lock:
        _sockets[key] = socket
    try:
        yield
    finally:
        with _sockets_lock:
            _sockets.pop(key, None)
        if master.poll() is None:  # still logging in after the whole run: give up
            master.kill()
        master.wait()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", destination],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=child_env(),
                timeout=10,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _private_folder() -> Path:
    """A 0700 folder for the socket: in the run's temp folder when its path is short
    and plain enough for a socket in a command line split on blanks (restic's
    ``sftp.command``, ``BORG_RSH``), else in /tmp."""
    for parent in (tempfile.gettempdir(), "/tmp"):
        folder = Path(tempfile.mkdtemp(prefix="ssh-", dir=parent))
        path = str(folder / SOCKET_NAME)
        if len(path) <= MAX_SOCKET_PATH and not any(c.isspace() or c in "\"'\\" for c in path):
            return folder
        folder.rmdir()
    return Path(tempfile.mkdtemp(prefix="backupctl-ssh-", dir="/tmp"))
