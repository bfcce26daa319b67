"""A real SFTP server for tests: OpenSSH's sshd on 127.0.0.1, one user, one key.

``SftpServer.create()`` prepares everything in a fresh temporary directory and
``start()`` runs sshd in the foreground of a child process, so ``stop()`` and
``start()`` can take it down and bring it back on the same port (the host key
and ``known_hosts`` stay valid) for fault-injection tests.

Layout of the temporary directory (mode 0755, owned by root)::

    server/   sshd_config, host key, authorized_keys, sshd.pid, sshd.log
    client/   id_ed25519 (+ .pub), known_hosts  -- what a backupctl ssh-keys folder holds
    repos/    owned by the SFTP user; ``new_repo_path()`` hands out paths below it

Needs root (sshd must switch to the SFTP user) and the ``openssh-server``
package; anything missing raises ``SftpServerError`` with the reason.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SFTP_USER = "backupctl-sftp"
SFTP_USER_HOME = Path("/var/lib/backupctl-sftp")
BORG_USER = "backupctl-borg"  # a storage box's borg port: its sessions run `borg serve`
START_TIMEOUT_S = 10.0


class SftpServerError(RuntimeError):
    """The test SFTP server could not be set up or started."""


def _find_program(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise SftpServerError(
            f"'{name}' not found: install the openssh-server package (the project's setup"
            " script does this: apt-get install openssh-server)"
        )
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise SftpServerError(f"{' '.join(argv)} failed (exit {result.returncode}): {detail}")
    return result


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL,
    so no sshd outlives its test session."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssh_version(ssh_keygen: str) -> tuple[int, int]:
    """(major, minor) of the installed OpenSSH, from ``ssh -V``."""
    ssh = shutil.which("ssh") or str(Path(ssh_keygen).with_name("ssh"))
    result = subprocess.run([ssh, "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def ensure_sftp_user(name: str = SFTP_USER, shell: str = "/usr/sbin/nologin") -> pwd.struct_passwd:
    """Create the SFTP system user if missing; make sure its account is not locked.

    With ``UsePAM no`` sshd refuses accounts whose password field starts with
    ``!`` ("account is locked"), which is what ``useradd`` leaves; ``*`` means
    "no password login" and lets key authentication through.
    """
    if not _user_exists(name):
        _create_user(name, shell)
    shadow = subprocess.run(["getent", "shadow", name], capture_output=True, text=True)
    fields = shadow.stdout.split(":")
    if len(fields) < 2 or fields[1] != "*":
        _run([_find_program("usermod"), "-p", "*", name])
    return pwd.getpwnam(name)


def _create_user(name: str, shell: str) -> None:
    try:
        _run(
            [
                _find_program("useradd"),
                "--system",
                "--create-home",
                "--home-dir",
                str(SFTP_USER_HOME if name == SFTP_USER else Path("/var/lib") / name),
                "--shell",
                shell,  # nologin for SFTP (internal-sftp never runs it); sh to run borg serve
                name,
            ]
        )
    except SftpServerError:
        if not _user_exists(name):  # else another test session created it meanwhile
            raise


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class SftpServer:
    """A running (or stopped) sshd serving SFTP for one user on 127.0.0.1."""

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts_path: Path
    base_dir: Path
    repos_dir: Path
    _sshd: str = field(repr=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _handed_out: set[str] = field(default_factory=set, repr=False)

    # -- set-up -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls, base_dir: Path | None = None, port: int | None = None, *, borg: bool = False
    ) -> SftpServer:
        """Prepare user, keys, config and repo directory; the server is not started yet.

        ``borg``: a server like a storage box's borg port instead: its own user (with a
        shell) whose every session runs ``borg serve --restrict-to-path repos/``."""
        if os.geteuid() != 0:
            raise SftpServerError("the test SFTP server needs root (sshd switches user)")
        sshd = _find_program("sshd")
        ssh_keygen = _find_program("ssh-keygen")
        _find_program("ssh")
        account = ensure_sftp_user(BORG_USER, "/bin/sh") if borg else ensure_sftp_user()

        # sshd's privilege separation directory; a fresh container does not have it.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

        base = Path(base_dir or tempfile.mkdtemp(prefix="backupctl-sftp-"))
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)  # the SFTP user must traverse it to reach repos/
        server_dir = base / "server"
        client_dir = base / "client"
        repos_dir = base / "repos"
        server_dir.mkdir(mode=0o755, exist_ok=True)
        client_dir.mkdir(mode=0o700, exist_ok=True)
        repos_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(repos_dir, account.pw_uid, account.pw_gid)

        host_key = server_dir / "ssh_host_ed25519_key"
        client_key = client_dir / "id_ed25519"
        for key, comment in ((host_key, "backupctl-test-host"), (client_key, "backupctl-test")):
            if not key.exists():
                _run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])

        authorized_keys = server_dir / "authorized_keys"
        authorized_keys.write_text(client_key.with_suffix(".pub").read_text())
        authorized_keys.chmod(0o644)  # sshd reads it as the SFTP user

        port = port or _free_port()
        host = "127.0.0.1"
        known_hosts = client_dir / "known_hosts"
        host_key_type, host_key_blob = host_key.with_suffix(".pub").read_text().split()[:2]
        known_hosts.write_text(f"[{host}]:{port} {host_key_type} {host_key_blob}\n")

        config_lines = [
            f"Port {port}",
            f"ListenAddress {host}",
            f"HostKey {host_key}",
            f"PidFile {server_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {account.pw_name}",
            "Subsystem sftp internal-sftp",
            f"ForceCommand borg serve --restrict-to-path {repos_dir}"
            if borg
            else "ForceCommand internal-sftp",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
        ]
        if _openssh_version(ssh_keygen) >= (9, 8):
            # Newer sshd penalises a source address after failed logins; tests that
            # provoke failures on purpose must not lock each other out.
            config_lines.append("PerSourcePenalties no")
        (server_dir / "sshd_config").write_text("\n".join(config_lines) + "\n")
        _run([sshd, "-t", "-f", str(server_dir / "sshd_config")])

        return cls(
            host=host,
            port=port,
            user=account.pw_name,
            key_path=client_key,
            known_hosts_path=known_hosts,
            base_dir=base,
            repos_dir=repos_dir,
            _sshd=sshd,
        )

    # -- life cycle -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.base_dir / "server" / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server" / "sshd.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start sshd (foreground child process) and wait until it accepts connections."""
        if self.running:
            return
        self._process = subprocess.Popen(
            [self._sshd, "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        atexit.register(self.stop)  # also on an uncaught exception in a script
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SftpServerError(
                    f"sshd exited with {self._process.returncode} on start: {self._log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5) as sock,
            ):
                # A listening sshd greets first; reading the banner proves it is sshd.
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
            time.sleep(0.05)
        self.stop()
        raise SftpServerError(
            f"sshd did not accept connections on {self.host}:{self.port} within"
            f" {START_TIMEOUT_S:.0f} s: {self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the listening sshd (SIGTERM, then SIGKILL) and wait for it.

        New connections are refused from then on; a session already open lives on
        until its client disconnects (sshd's per-connection processes are separate).
        """
        process, self._process = self._process, None
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / "server" / "sshd.pid").unlink()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[SftpServer]:
        """``with server.stopped(): ...`` -- the server is down inside, up again after."""
        self.stop()
        try:
            yield self
        finally:
            self.start()

    def close(self) -> None:
        """Stop the server and delete its directory (keys, repos). The user is kept."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> SftpServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- helpers for tests ------------------------------------------------------------------

    def new_repo_path(self, name: str) -> str:
        """A fresh absolute path on the server, writable by the SFTP user, not yet existing.

        ``name`` is used as is the first time; later calls with the same name get a
        ``-2``, ``-3``... suffix so tests sharing the session server never collide.
        """
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"repo name must be a plain file name, got {name!r}")
        candidate, n = name, 1
        while candidate in self._handed_out or (self.repos_dir / candidate).exists():
            n += 1
            candidate = f"{name}-{n}"
        self._handed_out.add(candidate)
        return str(self.repos_dir / candidate)

    def root_owned_folder(self, name: str) -> str:
        """A folder on the server the SFTP user can enter but not write into."""
        folder = self.base_dir / f"root-owned-{name}"
        folder.mkdir(mode=0o755, exist_ok=True)
        folder.chmod(0o755)
        return str(folder)

    def listing(self, path: str) -> list[str]:
        """What is in a folder on the server (the tests run on the same machine)."""
        return sorted(os.listdir(path))

    def ssh_settings(self) -> Any:
        """The backupctl ``SshSettings`` that point at this server."""
        from backupctl_core.domain.settings import SshSettings

        return SshSettings(host=self.host, user=self.user, port=self.port, key_path=self.key_path)

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return "(no sshd log)"
        return " | ".join(text[-lines:]) or "(empty sshd log)"


def start_sftp_server(base_dir: Path | None = None, *, borg: bool = False) -> SftpServer:
    """Create and start a server; call ``close()`` (or use ``with``) when done."""
    server = SftpServer.create(base_dir, borg=borg)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server
